"""Target networks: the small CNNs that SSKT trains.

Every builder returns a functional ``keras.Model`` that takes raw images
(float in [0, 255]), normalises them itself, and returns logits. Stage outputs
are named ``stage1``, ``stage2``, ... so the transfer module can tap them.
"""

from sskt_tf.errors import ConfigError
from sskt_tf.targets.cifar_resnet import CIFAR_RESNET_DEPTHS, cifar_resnet
from sskt_tf.targets.cifar_vgg import cifar_vgg16

TARGETS = tuple(f"resnet{depth}" for depth in CIFAR_RESNET_DEPTHS) + ("vgg16",)


def get(name, num_classes, image_size=32, mean=None, std=None):
    """Builds a target network by name.

    Args:
        name: ``resnet20`` ... ``resnet110`` or ``vgg16``.
        num_classes: number of target classes.
        image_size: input side length.
        mean: per-channel pixel mean (0-255 scale) for input normalisation.
        std: per-channel pixel standard deviation (0-255 scale).

    Returns:
        A functional ``keras.Model`` returning logits.
    """
    kwargs = dict(num_classes=num_classes, input_shape=(image_size, image_size, 3), mean=mean, std=std)
    if name.startswith("resnet") and name[len("resnet"):].isdigit():
        depth = int(name[len("resnet"):])
        if depth in CIFAR_RESNET_DEPTHS:
            return cifar_resnet(depth, **kwargs)
    if name == "vgg16":
        return cifar_vgg16(**kwargs)
    raise ConfigError(f"Unknown target {name!r}; choose one of {', '.join(TARGETS)}.")


__all__ = ["TARGETS", "cifar_resnet", "cifar_vgg16", "get"]
