"""Pieces shared by the target networks."""

import keras
from keras import layers

from sskt_tf.batch_norm import batch_norm

# CIFAR-10 training-set statistics on the 0-255 scale; a sensible default for
# natural images when the dataset's own statistics are not known.
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


def raw_image_input(input_shape, mean=None, std=None):
    """An image input plus the normalisation the target applies to it.

    Args:
        input_shape: ``(height, width, channels)``.
        mean: per-channel mean on the 0-255 scale (default: CIFAR-10's).
        std: per-channel standard deviation on the 0-255 scale.

    Returns:
        ``(inputs, normalised)`` Keras tensors.
    """
    inputs = keras.Input(shape=input_shape, name="images")
    mean = tuple(mean or CIFAR_MEAN)
    std = tuple(std or CIFAR_STD)
    variance = [s * s for s in std]
    normalised = layers.Normalization(mean=mean, variance=variance, name="normalize")(inputs)
    return inputs, normalised


def conv_bn_relu(x, filters, strides=1, name=None):
    """3x3 conv (He init, no bias), BatchNorm, ReLU."""
    x = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv",
    )(x)
    x = batch_norm(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def classifier(x, num_classes):
    """Global average pool (named ``pool``) and the ``logits`` Dense layer."""
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    # float32 logits under mixed precision policies (stable softmax, float32 predictions).
    return layers.Dense(num_classes, name="logits", dtype="float32")(x)
