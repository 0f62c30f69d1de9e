"""CIFAR ResNets (He et al. 2016, section 4.2) with option-A shortcuts."""

import keras
from keras import layers

from sskt_tf.targets.layers import ZeroPadShortcut, classifier, conv_bn, conv_bn_relu, raw_image_input

CIFAR_RESNET_DEPTHS = (20, 32, 44, 56, 110)
STAGE_WIDTHS = (16, 32, 64)


def _basic_block(x, filters, strides, name):
    shortcut = x
    y = conv_bn_relu(x, filters, strides, name=f"{name}_a")
    y = conv_bn(y, filters, name=f"{name}_b")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = ZeroPadShortcut(filters - x.shape[-1], name=f"{name}_shortcut")(x)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def cifar_resnet(depth, num_classes, input_shape=(32, 32, 3), mean=None, std=None):
    """CIFAR ResNet-``depth`` (depth = 6n + 2) with option-A shortcuts.

    Parameter counts at 10 classes: 0.27M (20), 0.46M (32), 0.66M (44),
    0.85M (56), 1.7M (110). Stage outputs are the layers ``stage1`` (16 ch),
    ``stage2`` (32 ch) and ``stage3`` (64 ch).

    Args:
        depth: one of 20, 32, 44, 56, 110.
        num_classes: number of classes.
        input_shape: ``(H, W, 3)`` of the raw input images.
        mean: per-channel mean (0-255) for the built-in normalisation.
        std: per-channel standard deviation (0-255).

    Returns:
        A functional ``keras.Model`` named ``resnet<depth>`` returning logits.

    Example:
        >>> import numpy as np
        >>> model = cifar_resnet(20, num_classes=10)
        >>> sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        269722
    """
    if depth not in CIFAR_RESNET_DEPTHS:
        raise ValueError(f"CIFAR ResNet depth must be one of {CIFAR_RESNET_DEPTHS}, got {depth}.")
    blocks_per_stage = (depth - 2) // 6
    inputs, x = raw_image_input(input_shape, mean, std)
    x = conv_bn_relu(x, STAGE_WIDTHS[0], name="stem")
    for stage, filters in enumerate(STAGE_WIDTHS, start=1):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, filters, strides, name=f"stage{stage}_block{block + 1}")
        x = layers.Identity(name=f"stage{stage}")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=f"resnet{depth}")
