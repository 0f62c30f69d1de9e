"""Building blocks of the built-in targets and heads: BatchNorm, conv-BN, input normalisation, classifier.

The helpers build 2-D (images) or 3-D (video clips, ``rank=3``) layers alike.
"""

import keras
from keras import layers, ops

# The layouts and the PyTorch weight transposes assume NHWC, whatever keras.json says.
CHANNELS_LAST = "channels_last"

_CONV = {2: layers.Conv2D, 3: layers.Conv3D}
_ZERO_PADDING = {2: layers.ZeroPadding2D, 3: layers.ZeroPadding3D}
_GLOBAL_POOL = {2: layers.GlobalAveragePooling2D, 3: layers.GlobalAveragePooling3D}

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
    rank=2,
):
    """The layers of a conv (He init, no bias) followed by BatchNorm, in call order.

    Args:
        filters: output channels.
        kernel_size: kernel side (square, or cubic when ``rank=3``).
        strides: convolution stride: an int, or one per spatial axis.
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
        rank: 2 (``Conv2D`` on images) or 3 (``Conv3D`` on clips).

    Returns:
        A list of layers: ``[ZeroPadding2D/3D,] Conv2D/3D, BatchNormalization``.
    """
    conv_name = conv_name or f"{name}_conv"
    padding, stack = "same", []
    strided = max(strides if isinstance(strides, (tuple, list)) else [strides]) > 1
    if symmetric_padding and strided and kernel_size > 1:
        stack.append(_ZERO_PADDING[rank](kernel_size // 2, data_format=CHANNELS_LAST, name=f"{conv_name}_pad"))
        padding = "valid"
    stack.append(
        _CONV[rank](
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


def conv_bn_relu(x, filters, strides=1, name=None, kernel_size=3, symmetric_padding=False, **kwargs):
    """:func:`conv_bn` (3x3 by default), then ReLU (``<name>_relu``); ``kwargs`` as for :func:`conv_bn`."""
    x = conv_bn(x, filters, kernel_size, strides, name, symmetric_padding, **kwargs)
    return layers.ReLU(name=f"{name}_relu")(x)


def classifier(x, num_classes, pool_name="pool", dense_name="logits"):
    """Global average pool and the Dense layer that returns the logits.

    Args:
        x: the last feature map (4-D for images, 5-D for clips).
        num_classes: output units.
        pool_name: the pooling layer's name.
        dense_name: the Dense layer's name.

    Returns:
        float32 logits, also under mixed precision policies (stable softmax,
        float32 predictions).
    """
    x = _GLOBAL_POOL[len(x.shape) - 2](data_format=CHANNELS_LAST, name=pool_name)(x)
    return layers.Dense(num_classes, name=dense_name, dtype="float32")(x)


@keras.saving.register_keras_serializable(package="sskt_tf")
class ZeroPadShortcut(layers.Layer):
    """Parameter-free shortcut: subsample by 2 on every spatial axis, add zero channels.

    The option-A shortcut of the CIFAR ResNets (zeros split before and after
    the channels) and the type-A shortcut of Hara et al.'s 3D ResNets (zeros
    after, from ``avg_pool3d(kernel_size=1, stride=2)`` and a concatenation).

    Args:
        extra_channels: channels to add.
        zeros_after: put all the zero channels after the input's (3D ResNets)
            instead of splitting them evenly before and after (CIFAR ResNets).
    """

    def __init__(self, extra_channels, zeros_after=False, **kwargs):
        super().__init__(**kwargs)
        self.extra_channels = int(extra_channels)
        self.zeros_after = bool(zeros_after)

    def call(self, x):
        spatial_axes = len(x.shape) - 2
        x = x[(slice(None), *[slice(None, None, 2)] * spatial_axes)]
        before = 0 if self.zeros_after else self.extra_channels // 2
        return ops.pad(x, [[0, 0]] * (spatial_axes + 1) + [[before, self.extra_channels - before]])

    def compute_output_shape(self, input_shape):
        batch, *spatial, channels = input_shape
        halved = [None if size is None else (size + 1) // 2 for size in spatial]
        return (batch, *halved, channels + self.extra_channels)

    def get_config(self):
        config = super().get_config()
        config.update(extra_channels=self.extra_channels, zeros_after=self.zeros_after)
        return config
