"""Building blocks of the built-in targets and heads: BatchNorm, conv-BN, input normalisation, classifier."""

import keras
from keras import layers


def batch_norm(name):
    """BatchNorm with PyTorch's defaults, synchronized across replicas.

    ``momentum=0.9`` and ``epsilon=1e-5`` are PyTorch's ``BatchNorm2d`` defaults
    (the original code's). ``synchronized=True`` computes the batch statistics
    over the *global* batch under any tf.distribute strategy, so training (and
    the moving statistics every worker saves) do not depend on the number of
    replicas or workers. With one replica it normalises as ordinary BatchNorm
    does, up to float rounding (the variance is computed as E[x^2] - E[x]^2);
    with several it adds all-reduces of the per-channel sums to every step.

    Args:
        name: layer name.

    Returns:
        A ``keras.layers.BatchNormalization``.
    """
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=name)


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


def conv_bn(x, filters, kernel_size=3, strides=1, name=None, symmetric_padding=False):
    """Conv (He init, no bias), then BatchNorm.

    Args:
        x: input Keras tensor.
        filters: output channels.
        kernel_size: square kernel side.
        strides: convolution stride.
        name: prefix of the layer names (``<name>_conv``, ``<name>_bn``).
        symmetric_padding: pad ``kernel_size // 2`` on every side before a
            strided conv, as PyTorch does. Keras ``"same"`` pads a strided conv
            on an even-sized input at the bottom/right only, which shifts the
            sampling grid by one pixel from torchvision's.

    Returns:
        The BatchNorm output tensor.
    """
    padding = "same"
    if symmetric_padding and strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    return batch_norm(f"{name}_bn")(x)


def conv_bn_relu(x, filters, strides=1, name=None, kernel_size=3, symmetric_padding=False):
    """:func:`conv_bn` (3x3 by default), then ReLU (``<name>_relu``)."""
    x = conv_bn(x, filters, kernel_size, strides, name, symmetric_padding)
    return layers.ReLU(name=f"{name}_relu")(x)


def classifier(x, num_classes):
    """Global average pool (named ``pool``) and the ``logits`` Dense layer."""
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    # float32 logits under mixed precision policies (stable softmax, float32 predictions).
    return layers.Dense(num_classes, name="logits", dtype="float32")(x)
