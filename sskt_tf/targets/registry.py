"""Target networks by name (``--target``): each is one :class:`TargetNetwork` entry.

The builders' modules register their networks in :mod:`sskt_tf.targets`; the flags'
validation, ``--help``, the data checks (images or clips) and every method find targets
only through :func:`get_network` and :func:`names`, so a new target is one builder plus
its registration.
"""

import dataclasses
from typing import Callable

from sskt_tf.registry import Registry


@dataclasses.dataclass(frozen=True)
class TargetNetwork:
    """A target network as ``--target`` names it.

    Attributes:
        name: the ``--target`` value (``"resnet20"``).
        summary: what it is, a few words (``"CIFAR ResNet-20, 0.27 M parameters"``).
        build: ``build(num_classes, image_size, mean, std, frames) -> keras.Model``: a
            functional model that takes raw images (or clips, float in [0, 255]),
            normalises them itself with ``mean``/``std`` (0-255 scale; None: its own
            default) and returns logits; ``frames`` is the clip length of a clip model.
            Name its stage outputs ``stage1``, ``stage2``, ... so the transfer module can tap them.
        takes_clips: whether it takes video clips ``[frames, H, W, 3]`` rather than images.
    """

    name: str
    summary: str
    build: Callable
    takes_clips: bool = False


_REGISTRY = Registry("Target", flag="target")


def register(network):
    """Adds ``network`` to the registry.

    Args:
        network: a :class:`TargetNetwork`.

    Returns:
        ``network``.

    Raises:
        ValueError: the name is taken.
    """
    return _REGISTRY.register(network)


def unregister(name):
    """Removes a target (a test's own, for instance); unknown names are ignored."""
    _REGISTRY.unregister(name)


def names(takes_clips=None):
    """The registered target names, in registration order.

    Args:
        takes_clips: None for all; True for the clip (video) targets only, False for the image ones.
    """
    return tuple(net.name for net in _REGISTRY.entries() if takes_clips is None or net.takes_clips == takes_clips)


def get_network(name):
    """The registered :class:`TargetNetwork` called ``name``.

    Raises:
        ConfigError: no target has that name (the message lists them).
    """
    return _REGISTRY.get(name)
