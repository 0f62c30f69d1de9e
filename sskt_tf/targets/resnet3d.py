"""Hara et al.'s 3D ResNets (CVPR 2018) for video clips: the paper's action-recognition targets.

Layout of ``models/resnet.py`` in kenshohara/3D-ResNets-PyTorch, which the
original SSKT code (``3D_SSKT/``) trains: conv1 7x7x7 with stride (1, 2, 2) and
padding 3 to 64 channels, BN, ReLU; 3x3x3 max-pool with stride 2 and padding 1;
four stages of BasicBlocks (3x3x3 convs) of widths 64/128/256/512, the first
block of stages 2-4 with stride 2 in time, height and width; global average
pool; ``fc``. Where a block changes shape its shortcut is type ``A`` (strided
subsampling plus zero channels, no parameters) or ``B`` (1x1x1 conv + BN).

Every layer is named after its torch module (``conv1``, ``layer2.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so a Hara checkpoint maps onto it one rule
per layer type (:mod:`sskt_tf.sources.torch_checkpoint`). The last block of each
stage is named ``layer1`` .. ``layer4``: the stage outputs the 3D transfer
module taps. Convolutions and the max-pool pad symmetrically, as PyTorch does.
"""

import keras

from sskt_tf.errors import ConfigError
from sskt_tf.targets.layers import CHANNELS_LAST, ZeroPadShortcut, classifier, conv_bn, raw_image_input

# BasicBlocks per stage, as in Hara's resnet10/18/34.
BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
DEPTHS = tuple(BLOCKS)
SHORTCUTS = ("A", "B")
STAGE_WIDTHS = (64, 128, 256, 512)
# The clips the paper trains on: 16 frames of 112x112.
CLIP_FRAMES = 16
CLIP_SIZE = 112
# Hara's mean (ActivityNet's, 0-255 scale), subtracted from every pixel; no division.
VIDEO_MEAN = (114.8, 107.7, 99.5)
VIDEO_STD = (1.0, 1.0, 1.0)


def _conv_bn(x, filters, kernel_size, strides, name, bn_name):
    return conv_bn(x, filters, kernel_size, strides, symmetric_padding=True, conv_name=name, bn_name=bn_name, rank=3)


def _basic_block(x, planes, stride, shortcut, output_name, name):
    y = _conv_bn(x, planes, 3, stride, f"{name}.conv1", f"{name}.bn1")
    y = keras.layers.ReLU(name=f"{name}.relu1")(y)
    y = _conv_bn(y, planes, 3, 1, f"{name}.conv2", f"{name}.bn2")
    residual = x
    if stride != 1 or x.shape[-1] != planes:
        if shortcut == "A":
            residual = ZeroPadShortcut(planes - x.shape[-1], zeros_after=True, name=f"{name}.downsample")(x)
        else:
            residual = _conv_bn(x, planes, 1, stride, f"{name}.downsample.0", f"{name}.downsample.1")
    y = keras.layers.Add(name=f"{name}.add")([y, residual])
    return keras.layers.ReLU(name=output_name)(y)


def resnet3d(
    depth,
    num_classes,
    input_shape=(CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE, 3),
    shortcut="A",
    mean=None,
    std=None,
    stage_widths=STAGE_WIDTHS,
):
    """Hara's 3D ResNet-``depth`` as a target: raw clips in, logits out.

    Trainable parameters of ResNet-18 with shortcut A at 400 classes (Kinetics)
    equal Hara's: 33,235,280 (33,409,104 with shortcut B). Stage outputs are the
    layers ``layer1`` .. ``layer4`` (64/128/256/512 channels; on 16x112x112
    clips at 8x28x28, 4x14x14, 2x7x7 and 1x4x4).

    Args:
        depth: one of ``DEPTHS`` (10, 18, 34).
        num_classes: number of classes.
        input_shape: ``(frames, height, width, 3)`` of the raw clips.
        shortcut: ``"A"`` (parameter-free, Hara's choice for ResNet-18 and 34
            on Kinetics) or ``"B"`` (1x1x1 conv + BN).
        mean: per-channel mean (0-255) the network subtracts (default
            ``VIDEO_MEAN``, the original's).
        std: per-channel divisor (default 1: mean subtraction only, as the original).
        stage_widths: channels of the four stages (conv1 has the first);
            smaller widths make quick experiments and tests.

    Returns:
        A functional ``keras.Model`` named ``resnet3d<depth>`` returning float32 logits.

    Example:
        >>> model = resnet3d(18, num_classes=101)
        >>> model.output_shape
        (None, 101)
    """
    if depth not in BLOCKS:
        raise ConfigError(f"3D ResNet depth must be one of {DEPTHS}, got {depth}.")
    shortcut = str(shortcut).upper()
    if shortcut not in SHORTCUTS:
        raise ConfigError(f"3D ResNet shortcut must be A or B, got {shortcut!r}.")
    if len(input_shape) != 4:
        raise ConfigError(f"A 3D ResNet takes clips (frames, height, width, 3), got input shape {input_shape}.")
    if len(stage_widths) != 4:
        raise ConfigError(f"A 3D ResNet has four stages; got stage widths {tuple(stage_widths)}.")
    inputs, x = raw_image_input(input_shape, mean or VIDEO_MEAN, std or VIDEO_STD)
    x = _conv_bn(x, stage_widths[0], 7, (1, 2, 2), "conv1", "bn1")
    x = keras.layers.ReLU(name="relu")(x)
    # Zero padding is -inf padding here: the inputs are ReLU outputs (>= 0).
    x = keras.layers.ZeroPadding3D(1, data_format=CHANNELS_LAST, name="maxpool.pad")(x)
    x = keras.layers.MaxPooling3D(3, strides=2, data_format=CHANNELS_LAST, name="maxpool")(x)
    for stage, (blocks, planes) in enumerate(zip(BLOCKS[depth], stage_widths), start=1):
        for index in range(blocks):
            stride = 2 if stage > 1 and index == 0 else 1
            output_name = f"layer{stage}" if index == blocks - 1 else f"layer{stage}.{index}.relu"
            x = _basic_block(x, planes, stride, shortcut, output_name, f"layer{stage}.{index}")
    logits = classifier(x, num_classes, pool_name="avgpool", dense_name="fc")
    return keras.Model(inputs, logits, name=f"resnet3d{depth}")
