"""Command-line source specs: ``imagenet/<arch>``, ``places365/<arch>`` or a ``.keras`` path."""

import os

from sskt_tf.errors import ConfigError
from sskt_tf.sources.csail_places365 import check_places365_download, places365
from sskt_tf.sources.files import from_file, require_file
from sskt_tf.sources.keras_applications import IMAGENET_ARCHS, imagenet, imagenet_key
from sskt_tf.sources.layer import scaled_size
from sskt_tf.targets import torchvision_resnet


def parse_spec(spec):
    """``(family, name)``: ``("imagenet", arch)``, ``("places365", arch)`` or ``("file", path)``."""
    family, slash, arch = spec.partition("/")
    if slash and family in ("imagenet", "places365") and not spec.endswith(".keras"):
        return family, arch
    return "file", spec


def check_spec(spec, places365_weights=None):
    """Validates a command-line source spec without building anything.

    Args:
        spec: ``imagenet/<arch>``, ``places365/<arch>`` or a path to a ``.keras`` file.
        places365_weights: the Places365 weights that will be used; with
            ``"places365"`` the download and conversion is checked as well.

    Raises:
        ConfigError: unknown architecture, missing file, unknown form, or
            Places365 weights that cannot be had.
    """
    family, name = parse_spec(spec)
    if family == "imagenet":
        imagenet_key(name)
    elif family == "places365":
        key = torchvision_resnet.arch_key(name)
        if places365_weights == "places365":
            check_places365_download(key)
    elif spec.endswith(".keras") or os.path.sep in spec:
        require_file(spec, "Source model file")
    else:
        raise ConfigError(
            f"Unknown source {spec!r}: use imagenet/<arch> ({', '.join(IMAGENET_ARCHS)}), "
            f"places365/<arch> ({', '.join(torchvision_resnet.ARCHS)}) or a path to a .keras file."
        )


def from_spec(spec, image_size, scale=7 / 3, source_image_size=None, weights="imagenet", places365_weights="places365"):
    """Builds a Source from a command-line spec.

    Args:
        spec: ``imagenet/<arch>``, ``places365/<arch>`` or a path to a ``.keras`` file.
        image_size: the target's image side length.
        scale: resize factor for ImageNet and Places365 sources
            (``floor(image_size*scale)``).
        source_image_size: explicit source side length; overrides ``scale``
            (and the input size of a ``.keras`` source with flexible inputs).
        weights: weights for ImageNet sources (``"imagenet"``, a path, None).
        places365_weights: weights for Places365 sources (see :func:`places365`).

    Returns:
        A :class:`Source`.
    """
    check_spec(spec)
    family, name = parse_spec(spec)
    size = source_image_size or scaled_size(image_size, scale)
    if family == "imagenet":
        return imagenet(name, weights=weights, input_size=size)
    if family == "places365":
        return places365(name, weights=places365_weights, input_size=size)
    # A user's model sees its own fixed input size, else --source_image_size, else
    # the target's images unresized: the 7/3 rule is about ImageNet-sized sources.
    return from_file(spec, input_size=source_image_size)
