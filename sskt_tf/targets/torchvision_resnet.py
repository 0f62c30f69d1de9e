"""torchvision-layout ResNets in Keras (ResNet-18 .. ResNet-152), layer for layer.

Every Keras layer is named after its torch module (``layer1.0.conv1``,
``layer1.0.downsample.1``, ``fc``), which makes the weight mapping of
:mod:`sskt_tf.sources.torch_checkpoint` one rule per layer type. The last block
of each stage is named ``layer1`` .. ``layer4`` so that the stage outputs can be
tapped.

The model takes *preprocessed* NHWC images of any size (torch mode:
``(x / 255 - mean) / std`` with the ImageNet mean and std);
:func:`with_raw_pixel_input` puts that preprocessing in front of it.
"""

import keras

from sskt_tf.errors import ConfigError

# Block type and blocks per stage, as in torchvision.models.resnet.
ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}


_EXPANSION = {"basic": 1, "bottleneck": 4}


_TORCH_BN_EPSILON = 1e-5


# The ImageNet statistics torchvision models (and the CSAIL Places365 ones) expect.
TORCH_MEAN = (0.485, 0.456, 0.406)


TORCH_STD = (0.229, 0.224, 0.225)


def arch_key(arch):
    """The ``ARCHS`` key of ``arch``; a ConfigError naming the choices if there is none."""
    key = str(arch).lower()
    if key not in ARCHS:
        raise ConfigError(f"Unknown torchvision ResNet {arch!r}; choose one of {', '.join(ARCHS)}.")
    return key


_NHWC = "channels_last"  # the weight transposes below assume it, whatever keras.json says


def _conv(x, filters, kernel_size, stride, name):
    padding = "same"  # symmetric k // 2 at stride 1, as PyTorch pads
    if stride > 1 and kernel_size > 1:
        # Keras "same" pads a stride-2 conv on an even input at the bottom/right only;
        # PyTorch pads k // 2 on every side.
        x = keras.layers.ZeroPadding2D(kernel_size // 2, data_format=_NHWC, name=f"{name}.pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding=padding, use_bias=False, data_format=_NHWC, name=name
    )(x)


def _bn(x, name):
    return keras.layers.BatchNormalization(axis=-1, epsilon=_TORCH_BN_EPSILON, momentum=0.9, name=name)(x)


def _block(x, kind, planes, stride, output_name, name):
    """One BasicBlock or Bottleneck (stride on the 3x3 conv, as torchvision does)."""
    in_channels = x.shape[-1]
    out_channels = planes * _EXPANSION[kind]
    if kind == "basic":
        y = keras.layers.ReLU(name=f"{name}.relu1")(_bn(_conv(x, planes, 3, stride, f"{name}.conv1"), f"{name}.bn1"))
        y = _bn(_conv(y, planes, 3, 1, f"{name}.conv2"), f"{name}.bn2")
    else:
        y = keras.layers.ReLU(name=f"{name}.relu1")(_bn(_conv(x, planes, 1, 1, f"{name}.conv1"), f"{name}.bn1"))
        y = keras.layers.ReLU(name=f"{name}.relu2")(_bn(_conv(y, planes, 3, stride, f"{name}.conv2"), f"{name}.bn2"))
        y = _bn(_conv(y, out_channels, 1, 1, f"{name}.conv3"), f"{name}.bn3")
    shortcut = x
    if stride != 1 or in_channels != out_channels:
        shortcut = _bn(_conv(x, out_channels, 1, stride, f"{name}.downsample.0"), f"{name}.downsample.1")
    y = keras.layers.Add(name=f"{name}.add")([y, shortcut])
    return keras.layers.ReLU(name=output_name)(y)


def build(arch, num_classes, input_shape=(None, None, 3)):
    """A torchvision-layout ResNet in Keras, with random weights.

    Args:
        arch: one of ``ARCHS``.
        num_classes: size of the final ``fc`` layer.
        input_shape: ``(H, W, 3)``; None sides accept any size.

    Returns:
        A functional ``keras.Model`` named ``arch`` mapping preprocessed images
        to logits.
    """
    key = arch_key(arch)
    kind, blocks_per_stage = ARCHS[key]
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.ReLU(name="relu")(_bn(_conv(inputs, 64, 7, 2, "conv1"), "bn1"))
    # Zero padding is -inf padding here: the inputs are ReLU outputs (>= 0).
    x = keras.layers.ZeroPadding2D(1, data_format=_NHWC, name="maxpool.pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, data_format=_NHWC, name="maxpool")(x)
    for stage, blocks in enumerate(blocks_per_stage, start=1):
        for index in range(blocks):
            stride = 2 if stage > 1 and index == 0 else 1
            output_name = f"layer{stage}" if index == blocks - 1 else f"layer{stage}.{index}.relu"
            x = _block(x, kind, 64 * 2 ** (stage - 1), stride, output_name, f"layer{stage}.{index}")
    x = keras.layers.GlobalAveragePooling2D(data_format=_NHWC, name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=key)


def with_raw_pixel_input(model):
    """``model`` behind torch-mode preprocessing, so it takes RGB pixels in [0, 255].

    Uses a standard ``Normalization`` layer, ``(x - 255 mean) / (255 std)``, which
    equals torchvision's ``Normalize(mean, std)`` after ``ToTensor()``; the result
    can be saved as ``.keras`` and used as a source file without further flags.

    Args:
        model: a model from :func:`build` (preprocessed-image input).

    Returns:
        A functional model named ``<model.name>_raw``.
    """
    inputs = keras.Input(model.input_shape[1:], name="pixels")
    normalize = keras.layers.Normalization(
        mean=[255.0 * m for m in TORCH_MEAN], variance=[(255.0 * s) ** 2 for s in TORCH_STD], name="torch_preprocessing"
    )
    return keras.Model(inputs, model(normalize(inputs)), name=f"{model.name}_raw")
