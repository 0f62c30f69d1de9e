"""VGG16 with BatchNorm for 32x32 inputs (the usual CIFAR variant)."""

import keras
from keras import layers

from sskt_tf.targets.layers import classifier, conv_bn_relu, raw_image_input

VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def cifar_vgg16(num_classes, input_shape=(32, 32, 3), mean=None, std=None):
    """VGG16-BN: 13 conv-BN-ReLU layers in 5 stages, each ending in 2x2 max-pool.

    The stage outputs (after pooling) are the layers ``stage1`` ... ``stage5``;
    a single ``Dense(num_classes)`` follows global pooling (about 14.7M
    parameters at 10 classes).

    Args:
        num_classes: number of classes.
        input_shape: ``(H, W, 3)`` of the raw input images.
        mean: per-channel mean (0-255) for the built-in normalisation.
        std: per-channel standard deviation (0-255).

    Returns:
        A functional ``keras.Model`` named ``vgg16`` returning logits.
    """
    inputs, x = raw_image_input(input_shape, mean, std)
    for stage, widths in enumerate(VGG16_STAGES, start=1):
        for index, filters in enumerate(widths, start=1):
            x = conv_bn_relu(x, filters, name=f"block{stage}_conv{index}")
        x = layers.MaxPooling2D(2, padding="same", name=f"stage{stage}")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="vgg16")
