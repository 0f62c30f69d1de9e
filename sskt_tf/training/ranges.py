"""What each numeric flag accepts, checked alike on the command line and in Python.

Every numeric :class:`TrainConfig` field carries an ``accepts`` rule in its
metadata: ``"> 0"``, ``">= 1"``, ``"0 or >= 8"`` (0 keeps a default), or
``"increasing >= 0"`` for a list. NaN and infinity never pass. ``tools/train.py``
checks the rules as absl parses the flags (:func:`register_validators`), and
:func:`sskt_tf.training.checks.validate` checks them again for configurations
built in Python (:func:`check`); both name the flag and what it accepts.
"""

import dataclasses
import math

from absl import flags

from sskt_tf.errors import ConfigError


def problem(value, rule):
    """What is wrong with ``value`` under ``rule``, or None when it passes (None values pass: unset).

    Args:
        value: a number, a list of numbers, or None.
        rule: ``"> B"``, ``">= B"``, ``"0 or >= B"``, ``"0 or > B"`` or ``"increasing <rule>"``.

    Returns:
        A phrase such as ``"must be a finite number > 0"``, or None.
    """
    if value is None:
        return None
    if rule.startswith("increasing "):
        element_rule = rule[len("increasing ") :]
        values = list(value)
        if any(problem(v, element_rule) for v in values):
            return f"must be numbers {element_rule}, in increasing order"
        if any(later <= earlier for earlier, later in zip(values, values[1:])):
            return "must be in increasing order, each once"
        return None
    zero_allowed = rule.startswith("0 or ")
    operator, bound = rule.removeprefix("0 or ").split()
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number {rule}"
    if zero_allowed and value == 0:
        return None
    passes = value > float(bound) if operator == ">" else value >= float(bound)
    return None if passes else f"must be {rule}"


def _rules(config_type):
    """``{field name: accepts rule}`` of the fields of ``config_type`` that have one."""
    fields = dataclasses.fields(config_type)
    return {item.name: item.metadata["accepts"] for item in fields if "accepts" in item.metadata}


def check(config):
    """Raises a ConfigError naming the first field of ``config`` that breaks its ``accepts`` rule."""
    for name, rule in _rules(type(config)).items():
        value = getattr(config, name)
        reason = problem(value, rule)
        if reason:
            shown = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
            raise ConfigError(f"--{name}={shown}: {reason}.")


def register_validators(config_type, flag_values=flags.FLAGS):
    """Makes absl refuse, while parsing, any flag value that breaks its field's ``accepts`` rule.

    Args:
        config_type: the dataclass whose fields define the flags (:class:`TrainConfig`).
        flag_values: the ``FlagValues`` holding them.
    """
    for name, rule in _rules(config_type).items():

        def validator(value, rule=rule):
            if isinstance(value, list):
                try:
                    value = [float(v) for v in value]
                except ValueError:
                    return True  # not numbers: config_from_flags names the flag
            reason = problem(value, rule)
            if reason:
                raise flags.ValidationError(reason)
            return True

        flags.register_validator(name, validator, flag_values=flag_values)
