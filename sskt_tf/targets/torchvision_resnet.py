"""torchvision-layout ResNets in Keras (ResNet-18 .. ResNet-152): targets, and converted sources.

He et al.'s ImageNet ResNets as ``torchvision.models.resnet`` builds them: 7x7
stride-2 conv to 64, BN, ReLU, 3x3 stride-2 max-pool; four stages of basic (18,
34) or bottleneck (50, 101, 152) blocks of widths 64/128/256/512 (x4 at the
bottleneck outputs), the first block of stages 2-4 with stride 2 (in a
bottleneck on its 3x3 conv, torchvision's "v1.5"), a 1x1 conv + BN projection
shortcut wherever the shape changes; global average pool, ``fc``. Strided convs
and the max-pool pad symmetrically, as PyTorch does, so the sampling grid is
torchvision's.

One builder serves both uses:

* as a **target** (the paper's Pascal VOC networks, ``--target=resnet18``), it
  takes raw pixels and normalises them itself, with BatchNorm synchronized
  across replicas (:func:`target`);
* as the Keras twin of a **PyTorch checkpoint** (Places365 sources,
  :mod:`sskt_tf.sources.torch_checkpoint`), it takes preprocessed images, as the
  torch network does (:func:`build`).

Every layer is named after its torch module (``layer1.0.conv1``,
``layer1.0.downsample.1``, ``fc``), which makes the checkpoint mapping one rule
per layer type. The last block of each stage is named ``layer1`` .. ``layer4``:
the stage outputs, at strides 4, 8, 16 and 32, that the transfer module taps.
"""

import keras

from sskt_tf.errors import ConfigError
from sskt_tf.targets.layers import CHANNELS_LAST, classifier, conv_bn, raw_image_input

# Block type and blocks per stage, as in torchvision.models.resnet.
ARCHS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
DEPTHS = tuple(int(name[len("resnet") :]) for name in ARCHS)
_EXPANSION = {"basic": 1, "bottleneck": 4}
# The ImageNet statistics torchvision models (and the CSAIL Places365 ones) expect.
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
# The same on the 0-255 scale: a target's default input normalisation.
IMAGENET_MEAN = tuple(255.0 * m for m in TORCH_MEAN)
IMAGENET_STD = tuple(255.0 * s for s in TORCH_STD)


def arch_key(arch):
    """The ``ARCHS`` key of ``arch``; a ConfigError naming the choices if there is none."""
    key = str(arch).lower()
    if key not in ARCHS:
        raise ConfigError(f"Unknown torchvision ResNet {arch!r}; choose one of {', '.join(ARCHS)}.")
    return key


def _conv_bn(x, filters, kernel_size, stride, conv_name, bn_name, synchronized):
    return conv_bn(
        x,
        filters,
        kernel_size,
        stride,
        symmetric_padding=True,
        synchronized=synchronized,
        conv_name=conv_name,
        bn_name=bn_name,
    )


def _block(x, kind, planes, stride, output_name, name, synchronized):
    """One BasicBlock or Bottleneck (stride on the 3x3 conv, as torchvision does)."""
    relu = keras.layers.ReLU
    in_channels = x.shape[-1]
    out_channels = planes * _EXPANSION[kind]
    if kind == "basic":
        y = _conv_bn(x, planes, 3, stride, f"{name}.conv1", f"{name}.bn1", synchronized)
        y = relu(name=f"{name}.relu1")(y)
        y = _conv_bn(y, planes, 3, 1, f"{name}.conv2", f"{name}.bn2", synchronized)
    else:
        y = _conv_bn(x, planes, 1, 1, f"{name}.conv1", f"{name}.bn1", synchronized)
        y = relu(name=f"{name}.relu1")(y)
        y = _conv_bn(y, planes, 3, stride, f"{name}.conv2", f"{name}.bn2", synchronized)
        y = relu(name=f"{name}.relu2")(y)
        y = _conv_bn(y, out_channels, 1, 1, f"{name}.conv3", f"{name}.bn3", synchronized)
    shortcut = x
    if stride != 1 or in_channels != out_channels:
        downsample = (f"{name}.downsample.0", f"{name}.downsample.1")
        shortcut = _conv_bn(x, out_channels, 1, stride, *downsample, synchronized)
    y = keras.layers.Add(name=f"{name}.add")([y, shortcut])
    return relu(name=output_name)(y)


def build(arch, num_classes, input_shape=(None, None, 3), normalization=None, synchronized_batch_norm=False):
    """A torchvision-layout ResNet in Keras, with random weights.

    Args:
        arch: one of ``ARCHS``.
        num_classes: size of the final ``fc`` layer.
        input_shape: ``(H, W, 3)``; None sides accept any size.
        normalization: None: the model takes *preprocessed* images (torch mode,
            ``(x / 255 - mean) / std``), as a converted checkpoint does;
            ``(mean, std)`` on the 0-255 scale: it takes raw pixels and
            normalises them itself (a ``normalize`` layer), as targets do.
        synchronized_batch_norm: BatchNorm statistics over the global batch
            under tf.distribute (see :func:`sskt_tf.targets.layers.batch_norm`).

    Returns:
        A functional ``keras.Model`` named ``arch`` returning float32 logits.
    """
    key = arch_key(arch)
    kind, blocks_per_stage = ARCHS[key]
    if normalization is None:
        inputs = x = keras.Input(input_shape, name="images")
    else:
        inputs, x = raw_image_input(input_shape, *normalization)
    x = _conv_bn(x, 64, 7, 2, "conv1", "bn1", synchronized_batch_norm)
    x = keras.layers.ReLU(name="relu")(x)
    # Zero padding is -inf padding here: the inputs are ReLU outputs (>= 0).
    x = keras.layers.ZeroPadding2D(1, data_format=CHANNELS_LAST, name="maxpool.pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, data_format=CHANNELS_LAST, name="maxpool")(x)
    for stage, blocks in enumerate(blocks_per_stage, start=1):
        for index in range(blocks):
            stride = 2 if stage > 1 and index == 0 else 1
            output_name = f"layer{stage}" if index == blocks - 1 else f"layer{stage}.{index}.relu"
            x = _block(
                x, kind, 64 * 2 ** (stage - 1), stride, output_name, f"layer{stage}.{index}", synchronized_batch_norm
            )
    return keras.Model(inputs, classifier(x, num_classes, pool_name="avgpool", dense_name="fc"), name=key)


def target(depth, num_classes, input_shape=(224, 224, 3), mean=None, std=None):
    """ResNet-``depth`` as a target: raw pixels in, synchronized BatchNorm.

    Trainable parameters at 1000 classes equal torchvision's: 11,689,512 (18),
    21,797,672 (34), 25,557,032 (50); at 20 classes (Pascal VOC): 11,186,772,
    21,294,932 and 23,549,012. Stage outputs are the layers ``layer1`` ..
    ``layer4``, with 64/128/256/512 channels (18, 34) or 256/512/1024/2048
    (50 and deeper).

    Args:
        depth: one of ``DEPTHS`` (18, 34, 50, 101, 152).
        num_classes: number of classes.
        input_shape: ``(H, W, 3)`` of the raw input images.
        mean: per-channel mean (0-255) for the built-in normalisation
            (default: torchvision's ImageNet mean).
        std: per-channel standard deviation (0-255) (default: ImageNet's).

    Returns:
        A functional ``keras.Model`` named ``resnet<depth>`` returning logits.

    Example:
        >>> import numpy as np
        >>> model = target(18, num_classes=1000)
        >>> sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        11689512
    """
    if depth not in DEPTHS:
        raise ValueError(f"torchvision ResNet depth must be one of {DEPTHS}, got {depth}.")
    normalization = (mean or IMAGENET_MEAN, std or IMAGENET_STD)
    return build(f"resnet{depth}", num_classes, input_shape, normalization, synchronized_batch_norm=True)


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
        mean=list(IMAGENET_MEAN), variance=[s**2 for s in IMAGENET_STD], name="torch_preprocessing"
    )
    return keras.Model(inputs, model(normalize(inputs)), name=f"{model.name}_raw")
