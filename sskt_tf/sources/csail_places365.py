"""Places365 sources: the CSAIL torchvision ResNets, downloaded and converted once.

Places365 networks exist only as PyTorch checkpoints; :func:`places365`
downloads the published one, converts it with
:mod:`sskt_tf.sources.torch_checkpoint` and caches the Keras model.
"""

import logging
import os

import keras

from sskt_tf import downloads
from sskt_tf.errors import ConfigError
from sskt_tf.sources import registry, torch_checkpoint
from sskt_tf.sources.layer import Source, pair
from sskt_tf.targets import torchvision_resnet

PLACES365_CLASSES = 365


# The official CSAIL checkpoints (github.com/CSAILVision/places365) of torchvision ResNets.
PLACES365_URL = "http://places2.csail.mit.edu/models_places365/{arch}_places365.pth.tar"


PLACES365_PUBLISHED = ("resnet18", "resnet50")


def places365_cache_path(arch, cache_dir=None):
    """Where the converted CSAIL checkpoint of ``arch`` is looked for.

    Args:
        arch: a torchvision ResNet name.
        cache_dir: the Keras home to use; defaults to ``$KERAS_HOME`` or
            ``~/.keras``, as ``keras.utils.get_file`` does.

    Returns:
        ``<cache_dir>/models/<arch>_places365.keras``.
    """
    if cache_dir is None:
        return downloads.keras_model_cache(f"{arch}_places365.keras")
    return os.path.join(os.path.expanduser(cache_dir), "models", f"{arch}_places365.keras")


def check_places365_download(arch, cache_dir=None):
    """Checks that ``places365(arch, weights="places365")`` can get its weights.

    Either the converted checkpoint is cached, or CSAIL publishes one for
    ``arch`` (it is downloaded and converted without torch).

    Args:
        arch: a torchvision ResNet name.
        cache_dir: see :func:`places365_cache_path`.

    Raises:
        ConfigError: saying how to provide the weights.
    """
    if os.path.exists(places365_cache_path(arch, cache_dir)):
        return
    if arch not in PLACES365_PUBLISHED:
        raise ConfigError(
            f"CSAIL publishes Places365 weights for {' and '.join(PLACES365_PUBLISHED)} only, not {arch}; "
            "pass --places365_weights=PATH with a checkpoint of your own."
        )


def _published_places365(arch, cache_dir):
    """The CSAIL network for ``arch``: converted once, then read from the cache."""
    converted = places365_cache_path(arch, cache_dir)
    if os.path.exists(converted):
        try:
            return torch_checkpoint.load(converted, arch, PLACES365_CLASSES)
        except ConfigError as error:
            raise ConfigError(f"{error}\nDelete {converted} to download and convert the checkpoint again.") from error
    check_places365_download(arch, cache_dir)
    url = PLACES365_URL.format(arch=arch)
    convert_command = (
        f"python tools/convert_torch_resnet.py --checkpoint {arch}_places365.pth.tar --arch {arch} "
        f"--num_classes {PLACES365_CLASSES} --output {converted}"
    )
    try:
        # get_file falls back to /tmp/.keras when the Keras home is missing or read-only.
        os.makedirs(os.path.dirname(converted), exist_ok=True)
    except OSError:
        pass
    try:
        checkpoint = keras.utils.get_file(
            f"{arch}_places365.pth.tar",
            origin=url,
            cache_subdir="models",
            cache_dir=os.path.dirname(os.path.dirname(converted)),
        )
    except Exception as error:  # keras raises a bare Exception on download failure
        raise ConfigError(
            f"Could not download the Places365 {arch} checkpoint from {url}: {error}\n"
            f"Without internet access, download it on another machine, then run: {convert_command}"
        ) from error
    try:
        model = torch_checkpoint.convert(checkpoint, arch, PLACES365_CLASSES)
    except ConfigError as error:
        raise ConfigError(
            f"{error}\nThe download may be incomplete: delete {checkpoint} to download it again."
        ) from error
    _cache_model(model, os.path.join(os.path.dirname(checkpoint), os.path.basename(converted)))
    return model


def _cache_model(model, path):
    """Saves ``model`` to ``path`` atomically; a failure only costs a conversion next time."""
    partial = f"{path}.{os.getpid()}.partial.keras"
    try:
        model.save(partial)
        os.replace(partial, path)
        logging.info("Converted Places365 checkpoint cached in %s.", path)
    except OSError as error:
        logging.warning(
            "Could not cache the converted checkpoint in %s (%s); it will be converted again next time.", path, error
        )
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def places365(arch="resnet50", weights="places365", input_size=224, name=None, cache_dir=None):
    """A Places365 classifier (torchvision ResNet trained by CSAIL) as a Source.

    The paper's "P" source. Its images get torchvision's preprocessing
    (``x / 255``, then ImageNet mean and std) after the same resize as the
    ImageNet sources.

    Args:
        arch: a torchvision ResNet (``resnet18`` .. ``resnet152``).
        weights: ``"places365"`` downloads the CSAIL checkpoint (resnet18 and
            resnet50 only) and converts it once (without torch) into
            :func:`places365_cache_path`; a path to a converted ``.keras`` or
            ``.weights.h5`` file, or to a ``.pth.tar``/``.npz`` checkpoint; None
            for random weights (tests only).
        input_size: side length the source sees (paper: ``floor(size * 7/3)``).
        name: source name; defaults to ``places365_<arch>``.
        cache_dir: Keras home for the converted download (see
            :func:`places365_cache_path`).

    Returns:
        A :class:`Source` producing 365 Places365 logits.
    """
    key = torchvision_resnet.arch_key(arch)
    if weights is None:
        model = torchvision_resnet.build(key, PLACES365_CLASSES)
    elif weights == "places365":
        model = _published_places365(key, cache_dir)
    else:
        model = torch_checkpoint.load(weights, key, PLACES365_CLASSES)
    return Source(model, name or f"places365_{key}", input_size=pair(input_size), preprocess="torch", from_logits=True)


def _check(arch, weights):
    if weights == "places365":
        check_places365_download(arch)


def missing_weights(arch, weights, cache_dir=None):
    """The CSAIL checkpoint ``places365(arch)`` would download, when its conversion is not cached yet.

    Args:
        arch: a torchvision ResNet name CSAIL publishes weights for.
        weights: ``"places365"``, None or a path (only ``"places365"`` downloads).
        cache_dir: see :func:`places365_cache_path`.

    Returns:
        A :class:`~sskt_tf.downloads.Missing`, or None.
    """
    converted = places365_cache_path(arch, cache_dir)
    if weights != "places365" or arch not in PLACES365_PUBLISHED or os.path.exists(converted):
        return None
    url = PLACES365_URL.format(arch=arch)
    return downloads.Missing(
        what=f"The Places365 weights of places365/{arch} are not converted in {converted}.",
        offline=(
            f"Offline: download {url} on a connected machine, then pass --places365_weights=PATH (or convert it "
            f"once: sskt-convert-torch-resnet --checkpoint=PATH --arch={arch} --num_classes=365 --output={converted})."
        ),
        url=url,
    )


registry.register(
    registry.SourceFamily(
        name="places365",
        prefix="places365",
        archs=tuple(torchvision_resnet.ARCHS),
        summary="CSAIL Places365 ResNets (downloaded and converted once, or --places365_weights=PATH)",
        build=lambda arch, weights, input_size: places365(arch, weights, input_size),
        check=_check,
        missing=missing_weights,
        weights_flag="places365_weights",
        weights_keyword="places365",
        num_classes=PLACES365_CLASSES,
    )
)
