"""Training methods, chosen by name (``--method``): SSKT and the baselines it is compared with.

Each method is one module of this package that calls :func:`register` with a
:class:`Method`; the modules are found automatically, so adding a method is one
module plus one flagfile. Every method's model is a ``keras.Model`` whose
``call(x)`` returns the target's logits, has a ``target`` attribute (the
network that is saved and exported), and trains with ``fit``.

=======  ==================================================================
sskt     target + one auxiliary head per frozen source (the paper's method)
scratch  the target alone, cross-entropy only
kd       Hinton distillation from a teacher over the target's classes
dml      deep mutual learning: two peers, each also matching the other
maxl     meta auxiliary learning: generated auxiliary labels, meta-learned
=======  ==================================================================

Beside them: ``base`` (:class:`~sskt_tf.methods.base.LossTermsModel`, every method's
training step, and its helpers), ``heads`` (SSKT's auxiliary heads) and
``losses`` (soft-label and target losses).
"""

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, Mapping

from sskt_tf.registry import Registry


def _no_check(config):
    del config


def _no_compile_kwargs(config):
    del config
    return {}


def _no_files(config):
    del config
    return {}


@dataclasses.dataclass(frozen=True)
class Method:
    """A training method as ``tools/train.py`` uses it.

    Attributes:
        name: the ``--method`` value.
        summary: one line for error messages and the README.
        build: ``build(config, data) -> keras.Model``, uncompiled; called
            inside the strategy scope and dtype policy. It builds what the
            method needs through the registries: the target
            (:func:`sskt_tf.targets.build_for`), the sources
            (:func:`sskt_tf.sources.flags.for_run`: the frozen sources, or a
            soft-label cache's placeholders), a teacher or peers.
        compile_kwargs: ``compile_kwargs(config) -> dict`` of the model's own
            ``compile`` arguments, besides ``optimizer``, ``loss``,
            ``weight_decay``, ``metrics`` and ``jit_compile``, which every
            method's ``compile`` takes.
        check: ``check(config)`` raises a ``ConfigError`` for flags the method
            cannot use; runs before any data is loaded.
        files: ``files(config) -> {flag: path}``, the files of the method's
            own flags that a run reads (KD's ``{"teacher": config.teacher}``):
            the run's up-front check looks for them with everything else.
        uses_sources: whether ``--sources`` (and ``--soft_label_cache``) apply.
        uses_unlabeled: whether its auxiliary terms can learn from unlabelled
            images (``--unlabeled_dataset``, ``--unlabeled_from_rest``): the
            target loss then sees the labelled examples only.
        multi_label: whether the method trains on multi-hot labels
            (``--target_loss=bce``).
        defaults: the values the method gives flags left unset (None), e.g.
            KD's ``{"alpha": 0.9, "temperature": 4.0}``; the configuration's
            validation fills them in, so ``flags.txt`` records them.
    """

    name: str
    summary: str
    build: Callable
    compile_kwargs: Callable = _no_compile_kwargs
    check: Callable = _no_check
    files: Callable = _no_files
    uses_sources: bool = False
    uses_unlabeled: bool = False
    multi_label: bool = False
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_REGISTRY = Registry("Method", flag="method", order=lambda method: (method.name != "sskt", method.name))


def register(method):
    """Adds ``method`` to the registry under ``method.name``.

    Args:
        method: a :class:`Method`.

    Returns:
        ``method``.

    Raises:
        ValueError: the name is taken.
    """
    return _REGISTRY.register(method)


def get(name):
    """The registered :class:`Method` called ``name``.

    Raises:
        ConfigError: no method has that name.
    """
    return _REGISTRY.get(name)


def unregister(name):
    """Removes a method (a test's own, for instance); unknown names are ignored."""
    _REGISTRY.unregister(name)


def names():
    """Registered method names, SSKT first."""
    return _REGISTRY.names()


def _import_method_modules():
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_import_method_modules()

__all__ = ["Method", "get", "names", "register", "unregister"]
