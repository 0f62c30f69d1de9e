"""Building blocks of the built-in targets and heads: BatchNorm, conv-BN, input normalisation, classifier."""

import keras
from keras import layers

# The layouts and the PyTorch weight transposes assume NHWC, whatever keras.json says.
CHANNELS_LAST = "channels_last"

# CIFAR-10 training-set statistics on the 0-255 scale; a sensible default for
# natural images when the dataset's own statistics are not known.
CIFAR_MEAN = (125.3, 123.0, 113.9)
CIFAR_STD = (63.0, 62.1, 66.7)


def batch_norm(name, synchronized=True):
    """BatchNorm with PyTorch's defaults, synchronized across replicas by default.

    ``momentum=0.9`` and ``epsilon=1e-5`` are PyTorch's ``BatchNorm2d`` defaults
    (the original code's). ``synchronized=True`` computes the batch statistics
    over the *global* batch under any tf.distribute strategy, so training (and
    the moving statistics every worker saves) do not depend on the number of
    replicas or workers. With one replica it normalises as ordinary BatchNorm
    does, up to float rounding (the variance is computed as E[x^2] - E[x]^2);
    with several it adds all-reduces of the per-channel sums to every step.

    Args:
        name: layer name.
        synchronized: global-batch statistics (networks that train); False for
            networks that only run in inference mode, such as converted sources.

    Returns:
        A ``keras.layers.BatchNormalization``.
    """
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=synchronized, name=name)


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


def conv_bn_layers(
    filters,
    kernel_size=3,
    strides=1,
    name=None,
    symmetric_padding=False,
    synchronized=True,
    conv_name=None,
    bn_name=None,
):
    """The layers of a conv (He init, no bias) followed by BatchNorm, in call order.

    Args:
        filters: output channels.
        kernel_size: square kernel side.
        strides: convolution stride.
        name: prefix of the layer names (``<name>_conv``, ``<name>_bn``).
        symmetric_padding: pad ``kernel_size // 2`` on every side before a
            strided conv (a ``<conv name>_pad`` layer), as PyTorch does. Keras
            ``"same"`` pads a strided conv on an even-sized input at the
            bottom/right only, which shifts the sampling grid by one pixel from
            torchvision's.
        synchronized: see :func:`batch_norm`.
        conv_name: the conv layer's name, instead of ``<name>_conv`` (e.g. the
            torch module name ``layer1.0.conv1``).
        bn_name: the BatchNorm layer's name, instead of ``<name>_bn``.

    Returns:
        A list of layers: ``[ZeroPadding2D,] Conv2D, BatchNormalization``.
    """
    conv_name = conv_name or f"{name}_conv"
    padding, stack = "same", []
    if symmetric_padding and strides > 1 and kernel_size > 1:
        stack.append(layers.ZeroPadding2D(kernel_size // 2, data_format=CHANNELS_LAST, name=f"{conv_name}_pad"))
        padding = "valid"
    stack.append(
        layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=False,
            kernel_initializer="he_normal",
            data_format=CHANNELS_LAST,
            name=conv_name,
        )
    )
    stack.append(batch_norm(bn_name or f"{name}_bn", synchronized=synchronized))
    return stack


def conv_bn(x, filters, kernel_size=3, strides=1, name=None, symmetric_padding=False, **kwargs):
    """Applies :func:`conv_bn_layers` to the Keras tensor ``x``.

    Args:
        x: input Keras tensor.
        filters, kernel_size, strides, name, symmetric_padding: see :func:`conv_bn_layers`.
        **kwargs: ``synchronized``, ``conv_name``, ``bn_name`` of :func:`conv_bn_layers`.

    Returns:
        The BatchNorm output tensor.
    """
    for layer in conv_bn_layers(filters, kernel_size, strides, name, symmetric_padding, **kwargs):
        x = layer(x)
    return x


def conv_bn_relu(x, filters, strides=1, name=None, kernel_size=3, symmetric_padding=False):
    """:func:`conv_bn` (3x3 by default), then ReLU (``<name>_relu``)."""
    x = conv_bn(x, filters, kernel_size, strides, name, symmetric_padding)
    return layers.ReLU(name=f"{name}_relu")(x)


def classifier(x, num_classes, pool_name="pool", dense_name="logits"):
    """Global average pool and the Dense layer that returns the logits.

    Args:
        x: the last feature map.
        num_classes: output units.
        pool_name: the pooling layer's name.
        dense_name: the Dense layer's name.

    Returns:
        float32 logits, also under mixed precision policies (stable softmax,
        float32 predictions).
    """
    x = layers.GlobalAveragePooling2D(data_format=CHANNELS_LAST, name=pool_name)(x)
    return layers.Dense(num_classes, name=dense_name, dtype="float32")(x)
