"""ImageNet-style ResNets (He et al. 2016) in torchvision's layout: ResNet-18/34/50.

The SSKT paper's targets for Pascal VOC 2007 (224x224 images). Stem: 7x7
stride-2 conv to 64, BN, ReLU, 3x3 stride-2 max-pool; then four stages of
basic (18, 34) or bottleneck (50) blocks of widths 64/128/256/512 (x4 at the
bottleneck outputs), the first block of stages 2-4 with stride 2 (in a
bottleneck on its 3x3 conv, as torchvision's "v1.5"), a 1x1 conv + BN
projection shortcut wherever the shape changes; global average pool, Dense.
Strided convs and the max-pool pad symmetrically, as PyTorch does, so the
sampling grid is torchvision's.
"""

import keras
from keras import layers

from sskt_tf.targets.layers import classifier, conv_bn, conv_bn_relu, raw_image_input

# torchvision's ImageNet statistics (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) on the 0-255 scale.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
STAGE_WIDTHS = (64, 128, 256, 512)


def _residual(x, y, strides, name):
    """``ReLU(y + shortcut(x))``; the shortcut projects (1x1 conv + BN) where the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != y.shape[-1]:
        shortcut = conv_bn(x, y.shape[-1], 1, strides, name=f"{name}_shortcut")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def _basic_block(x, width, strides, name):
    """Two 3x3 conv-BN layers (the first strided); output width ``width``."""
    y = conv_bn_relu(x, width, strides, name=f"{name}_a", symmetric_padding=True)
    y = conv_bn(y, width, 3, name=f"{name}_b")
    return _residual(x, y, strides, name)


def _bottleneck_block(x, width, strides, name):
    """1x1 to ``width``, strided 3x3, 1x1 to ``4 * width``, each with BN."""
    y = conv_bn_relu(x, width, name=f"{name}_a", kernel_size=1)
    y = conv_bn_relu(y, width, strides, name=f"{name}_b", symmetric_padding=True)
    y = conv_bn(y, 4 * width, 1, name=f"{name}_c")
    return _residual(x, y, strides, name)


# Block function and blocks per stage, as in torchvision.models.resnet.
LAYOUTS = {
    18: (_basic_block, (2, 2, 2, 2)),
    34: (_basic_block, (3, 4, 6, 3)),
    50: (_bottleneck_block, (3, 4, 6, 3)),
}
IMAGENET_RESNET_DEPTHS = tuple(LAYOUTS)


def _stem(x):
    """7x7 stride-2 conv to 64, BN, ReLU, 3x3 stride-2 max-pool: stride 4 in all."""
    x = conv_bn_relu(x, 64, 2, name="stem", kernel_size=7, symmetric_padding=True)
    # Zero padding acts as PyTorch's -inf max-pool padding here: ReLU outputs are >= 0.
    x = layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)


def imagenet_resnet(depth, num_classes, input_shape=(224, 224, 3), mean=None, std=None):
    """ImageNet-style ResNet-``depth`` in torchvision's layout.

    Trainable parameters at 1000 classes equal torchvision's: 11,689,512 (18),
    21,797,672 (34), 25,557,032 (50); at 20 classes (Pascal VOC): 11,186,772,
    21,294,932 and 23,549,012. Stage outputs are the layers ``stage1`` ..
    ``stage4`` at strides 4, 8, 16, 32, with 64/128/256/512 channels (18, 34)
    or 256/512/1024/2048 (50).

    Args:
        depth: one of 18, 34, 50.
        num_classes: number of classes.
        input_shape: ``(H, W, 3)`` of the raw input images.
        mean: per-channel mean (0-255) for the built-in normalisation
            (default: torchvision's ImageNet mean).
        std: per-channel standard deviation (0-255) (default: ImageNet's).

    Returns:
        A functional ``keras.Model`` named ``resnet<depth>`` returning logits.

    Example:
        >>> import numpy as np
        >>> model = imagenet_resnet(18, num_classes=1000)
        >>> sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        11689512
    """
    if depth not in LAYOUTS:
        raise ValueError(f"ImageNet ResNet depth must be one of {IMAGENET_RESNET_DEPTHS}, got {depth}.")
    block, blocks_per_stage = LAYOUTS[depth]
    inputs, x = raw_image_input(input_shape, mean or IMAGENET_MEAN, std or IMAGENET_STD)
    x = _stem(x)
    for stage, (width, blocks) in enumerate(zip(STAGE_WIDTHS, blocks_per_stage), start=1):
        for index in range(blocks):
            strides = 2 if stage > 1 and index == 0 else 1
            x = block(x, width, strides, name=f"stage{stage}_block{index + 1}")
        x = layers.Identity(name=f"stage{stage}")(x)
    return keras.Model(inputs, classifier(x, num_classes), name=f"resnet{depth}")
