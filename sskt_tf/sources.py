"""Frozen source networks that provide soft labels.

A :class:`Source` wraps any Keras model. Called on raw target images (float in
[0, 255], target resolution) it resizes them to the source's input size, applies
the source's own preprocessing, and returns the frozen model's logits. It never
trains and always runs in inference mode (BatchNorm uses moving statistics).
"""

import logging
import math
import os
import re
from fractions import Fraction

import keras
from keras import ops

from sskt_tf import fold_batch_norm as fold_batch_norm_lib
from sskt_tf import torch_resnet
from sskt_tf.errors import ConfigError

# keras.applications constructor name and `preprocess_input` mode per architecture.
IMAGENET_ARCHS = {
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet152": ("ResNet152", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "resnet101v2": ("ResNet101V2", "tf"),
    "resnet152v2": ("ResNet152V2", "tf"),
    "vgg16": ("VGG16", "caffe"),
    "vgg19": ("VGG19", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "efficientnetb0": ("EfficientNetB0", None),  # rescales inside the model
    "efficientnetb1": ("EfficientNetB1", None),
    "densenet121": ("DenseNet121", "torch"),
}
PREPROCESS_MODES = ("caffe", "tf", "torch")
PLACES365_CLASSES = 365
# The official CSAIL checkpoints (github.com/CSAILVision/places365) of torchvision ResNets.
PLACES365_URL = "http://places2.csail.mit.edu/models_places365/{arch}_places365.pth.tar"
PLACES365_PUBLISHED = ("resnet18", "resnet50")
# Architectures whose classifier flattens a fixed-size map (input must be 224).
_FIXED_INPUT_ARCHS = ("vgg16", "vgg19")


def parse_scale(value):
    """Parses a resize factor such as ``"7/3"`` or ``2.5``.

    Args:
        value: a number, a fraction string, or None.

    Returns:
        A positive ``float``, or None when ``value`` is None or empty.
    """
    if value in (None, ""):
        return None
    try:
        scale = float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError) as error:
        raise ConfigError(f"Invalid source scale {value!r}: use a number or a fraction like 7/3.") from error
    if scale <= 0:
        raise ConfigError(f"Source scale must be positive, got {value!r}.")
    return scale


def scaled_size(image_size, scale):
    """The paper's resize rule: ``floor(image_size * scale)`` (32 * 7/3 -> 74).

    Args:
        image_size: target image side length.
        scale: resize factor.

    Returns:
        The source input side length.
    """
    return int(math.floor(image_size * scale + 1e-6))


def _pair(size):
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return tuple(int(s) for s in size)


def require_file(path, what):
    """Raises a ConfigError naming ``what`` when ``path`` does not exist."""
    if not os.path.exists(path):
        raise ConfigError(f"{what} {path!r} does not exist.")


def _imagenet_key(arch):
    """The ``IMAGENET_ARCHS`` key of ``arch``; a ConfigError if there is none."""
    key = arch.lower()
    if key not in IMAGENET_ARCHS:
        raise ConfigError(f"Unknown ImageNet architecture {arch!r}; choose one of {', '.join(IMAGENET_ARCHS)}.")
    return key


def _fixed_input_size(model):
    shape = model.input_shape
    if isinstance(shape, list):
        raise ConfigError(f"Source model {model.name!r} has {len(shape)} inputs; a source takes one image input.")
    if len(shape) != 4:
        raise ConfigError(f"Source model {model.name!r} takes inputs of shape {shape}; expected images [batch, H, W, C].")
    height, width = shape[1], shape[2]
    return (height, width) if height is not None and width is not None else None


def _ends_in_softmax(model):
    last = model.layers[-1]
    if isinstance(last, keras.Model):
        return _ends_in_softmax(last)
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


@keras.saving.register_keras_serializable(package="sskt_tf")
class Source(keras.layers.Layer):
    """A frozen source network with its own resize and preprocessing.

    Args:
        model: a Keras model mapping preprocessed images to logits (or
            probabilities, see ``from_logits``).
        name: short name, used in metric names (``aux_<name>_loss``).
        input_size: ``int`` or ``(height, width)`` the model expects. None
            takes the model's fixed input size if it has one, else ``scale``.
        scale: resize factor applied to the incoming images when
            ``input_size`` is unknown (the paper uses 7/3). None = no resize.
        preprocess: ``"caffe"``, ``"tf"``, ``"torch"`` (the
            ``keras.applications`` modes), a callable, or None when the model
            takes raw [0, 255] pixels itself.
        from_logits: False if the model outputs probabilities; their log is
            used as logits. None detects a final softmax.
        fold_batch_norm: replace ``model`` by a copy whose BatchNorm layers
            are folded into the convolutions before them (same outputs, faster;
            see :mod:`sskt_tf.fold_batch_norm`). ``source.model`` is that copy.

    Call args:
        images: raw images ``[batch, H, W, 3]``, float in [0, 255].

    Returns:
        float32 source logits ``[batch, num_classes]``.

    Example:
        >>> net = keras.applications.MobileNetV2(weights=None, classifier_activation=None)
        >>> source = Source(net, "mobilenet", preprocess="tf")
        >>> source(keras.ops.zeros((2, 32, 32, 3))).shape
        (2, 1000)
    """

    def __init__(self, model, name, input_size=None, scale=None, preprocess=None, from_logits=None,
                 fold_batch_norm=True, **kwargs):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(name)):
            raise ConfigError(f"Source name {name!r} may use only letters, digits, '_', '-' and '.'.")
        kwargs.pop("trainable", None)
        super().__init__(name=name, trainable=False, **kwargs)
        if isinstance(preprocess, str) and preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"Unknown preprocessing mode {preprocess!r}; choose one of {PREPROCESS_MODES}.")
        model.trainable = False
        self.model = fold_batch_norm_lib.fold_batch_norm(model) if fold_batch_norm else model
        self.fold_batch_norm = bool(fold_batch_norm)
        self.input_size = _pair(input_size) or _fixed_input_size(model)
        self.scale = None if self.input_size else parse_scale(scale)
        self.preprocess = preprocess
        self.from_logits = (not _ends_in_softmax(model)) if from_logits is None else bool(from_logits)

    @property
    def num_classes(self):
        """Size of the source's label space."""
        return int(self.model.output_shape[-1])

    def output_size(self, image_size):
        """Source input size for incoming images of side ``image_size``."""
        if self.input_size:
            return self.input_size
        if self.scale:
            return (scaled_size(image_size[0], self.scale), scaled_size(image_size[1], self.scale))
        return tuple(image_size)

    def preprocess_images(self, images):
        """Resizes raw images and applies the source's preprocessing.

        Args:
            images: ``[batch, H, W, 3]`` RGB pixels in [0, 255].

        Returns:
            float32 model inputs at :meth:`output_size`.
        """
        x = ops.cast(images, "float32")
        size = self.output_size(tuple(x.shape[1:3]))
        if size != tuple(x.shape[1:3]):
            x = ops.image.resize(x, size, interpolation="bilinear")
        if isinstance(self.preprocess, str):
            return keras.applications.imagenet_utils.preprocess_input(x, mode=self.preprocess)
        if self.preprocess is not None:
            return self.preprocess(x)
        return x

    def call(self, images):
        outputs = ops.cast(self.model(self.preprocess_images(images), training=False), "float32")
        if not self.from_logits:
            outputs = ops.log(ops.clip(outputs, 1e-7, 1.0))
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        if callable(self.preprocess):
            raise NotImplementedError("A Source with a callable `preprocess` cannot be serialised; use a mode string.")
        config = super().get_config()
        config.update(
            model=keras.saving.serialize_keras_object(self.model),
            input_size=self.input_size,
            scale=self.scale,
            preprocess=self.preprocess,
            from_logits=self.from_logits,
            fold_batch_norm=self.fold_batch_norm,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def _load_application(constructor, weights, input_size):
    """Builds a ``keras.applications`` classifier with logits at ``input_size``."""
    fixed = (224, 224)
    try:
        model = constructor(weights=weights, classifier_activation=None)
    except Exception as error:  # keras raises a bare Exception on download failure
        if weights == "imagenet":
            raise ConfigError(
                f"Could not load ImageNet weights for {constructor.__name__}: {error}\n"
                "Without internet access, download the weights file on another machine into "
                "~/.keras/models/ (or any path) and pass it as weights=PATH "
                "(--source_weights=PATH on the command line)."
            ) from error
        raise ConfigError(f"Could not load weights {weights!r} into {constructor.__name__}: {error}") from error
    if tuple(input_size) == fixed:
        return model
    # keras.applications fixes a 224x224 input when loading the classifier weights; the
    # convolutional trunk and global pooling accept any size. Clone the graph (every
    # layer, including ones a constructor adds only with weights="imagenet", such as
    # EfficientNet's input rescaling) onto a new input and copy the weights.
    resized = keras.models.clone_model(model, input_tensors=keras.Input((*input_size, 3)))
    resized.set_weights(model.get_weights())
    return resized


def imagenet(arch, weights="imagenet", input_size=224, name=None):
    """An ImageNet classifier from ``keras.applications`` as a Source.

    Args:
        arch: one of ``IMAGENET_ARCHS`` (e.g. ``"resnet50"``, ``"mobilenetv2"``).
        weights: ``"imagenet"`` (downloaded by Keras), a weights file path, or
            None for random weights (tests only).
        input_size: side length the source sees; the paper uses
            ``floor(target_size * 7/3)``.
        name: source name; defaults to ``imagenet_<arch>``.

    Returns:
        A :class:`Source` producing 1000 ImageNet logits.
    """
    key = _imagenet_key(arch)
    if weights not in (None, "imagenet"):
        require_file(weights, f"Weights file for imagenet/{key}")
    size = _pair(input_size)
    if key in _FIXED_INPUT_ARCHS and size != (224, 224):
        raise ConfigError(
            f"{arch} flattens a 7x7 map into its classifier, so it only takes 224x224 inputs "
            f"(asked for {size}); use --source_image_size=224 or another architecture."
        )
    constructor_name, mode = IMAGENET_ARCHS[key]
    model = _load_application(getattr(keras.applications, constructor_name), weights, size)
    return Source(model, name or f"imagenet_{key}", input_size=size, preprocess=mode, from_logits=True)


def places365_cache_path(arch, cache_dir=None):
    """Where the converted CSAIL checkpoint of ``arch`` is looked for.

    Args:
        arch: a torchvision ResNet name.
        cache_dir: the Keras home to use; defaults to ``$KERAS_HOME`` or
            ``~/.keras``, as ``keras.utils.get_file`` does.

    Returns:
        ``<cache_dir>/models/<arch>_places365.keras``.
    """
    home = os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    return os.path.join(home, "models", f"{arch}_places365.keras")


def check_places365_download(arch, cache_dir=None):
    """Checks that ``places365(arch, weights="places365")`` can get its weights.

    Either the converted checkpoint is cached, or CSAIL publishes one for
    ``arch`` and torch is installed to convert it.

    Args:
        arch: a torchvision ResNet name.
        cache_dir: see :func:`places365_cache_path`.

    Raises:
        ConfigError: saying how to provide the weights.
    """
    if os.path.exists(places365_cache_path(arch, cache_dir)):
        return
    if arch not in PLACES365_PUBLISHED:
        raise ConfigError(
            f"CSAIL publishes Places365 weights for {' and '.join(PLACES365_PUBLISHED)} only, not {arch}; "
            "pass --places365_weights=PATH with a checkpoint of your own."
        )
    torch_resnet.require_torch(PLACES365_URL.format(arch=arch))


def _published_places365(arch, cache_dir):
    """The CSAIL network for ``arch``: converted once, then read from the cache."""
    converted = places365_cache_path(arch, cache_dir)
    if os.path.exists(converted):
        try:
            return torch_resnet.load(converted, arch, PLACES365_CLASSES)
        except ConfigError as error:
            raise ConfigError(f"{error}\nDelete {converted} to download and convert the checkpoint again.") from error
    check_places365_download(arch, cache_dir)
    url = PLACES365_URL.format(arch=arch)
    convert_command = (
        f"python tools/convert_torch_resnet.py --checkpoint {arch}_places365.pth.tar --arch {arch} "
        f"--num_classes {PLACES365_CLASSES} --output {converted}"
    )
    try:
        # get_file falls back to /tmp/.keras when the Keras home is missing or read-only.
        os.makedirs(os.path.dirname(converted), exist_ok=True)
    except OSError:
        pass
    try:
        checkpoint = keras.utils.get_file(
            f"{arch}_places365.pth.tar", origin=url, cache_subdir="models", cache_dir=os.path.dirname(os.path.dirname(converted))
        )
    except Exception as error:  # keras raises a bare Exception on download failure
        raise ConfigError(
            f"Could not download the Places365 {arch} checkpoint from {url}: {error}\n"
            f"Without internet access, download it on another machine, then run: {convert_command}"
        ) from error
    try:
        model = torch_resnet.convert(checkpoint, arch, PLACES365_CLASSES)
    except ConfigError as error:
        raise ConfigError(f"{error}\nThe download may be incomplete: delete {checkpoint} to download it again.") from error
    _cache_model(model, os.path.join(os.path.dirname(checkpoint), os.path.basename(converted)))
    return model


def _cache_model(model, path):
    """Saves ``model`` to ``path`` atomically; a failure only costs a conversion next time."""
    partial = f"{path}.{os.getpid()}.partial.keras"
    try:
        model.save(partial)
        os.replace(partial, path)
        logging.info("Converted Places365 checkpoint cached in %s.", path)
    except OSError as error:
        logging.warning("Could not cache the converted checkpoint in %s (%s); it will be converted again next time.", path, error)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def places365(arch="resnet50", weights="places365", input_size=224, name=None, cache_dir=None):
    """A Places365 classifier (torchvision ResNet trained by CSAIL) as a Source.

    The paper's "P" source. Its images get torchvision's preprocessing
    (``x / 255``, then ImageNet mean and std) after the same resize as the
    ImageNet sources.

    Args:
        arch: a torchvision ResNet (``resnet18`` .. ``resnet152``).
        weights: ``"places365"`` downloads the CSAIL checkpoint (resnet18 and
            resnet50 only; needs torch) and converts it once into
            :func:`places365_cache_path`; a path to a converted ``.keras`` or
            ``.weights.h5`` file, or to a ``.pth.tar``/``.npz`` checkpoint; None
            for random weights (tests only).
        input_size: side length the source sees (paper: ``floor(size * 7/3)``).
        name: source name; defaults to ``places365_<arch>``.
        cache_dir: Keras home for the converted download (see
            :func:`places365_cache_path`).

    Returns:
        A :class:`Source` producing 365 Places365 logits.
    """
    key = torch_resnet.arch_key(arch)
    if weights is None:
        model = torch_resnet.build(key, PLACES365_CLASSES)
    elif weights == "places365":
        model = _published_places365(key, cache_dir)
    else:
        model = torch_resnet.load(weights, key, PLACES365_CLASSES)
    return Source(model, name or f"places365_{key}", input_size=_pair(input_size), preprocess="torch", from_logits=True)


def from_file(path, name=None, input_size=None, scale=None, preprocess=None):
    """A saved ``.keras`` model as a Source.

    Args:
        path: the ``.keras`` file.
        name: source name; defaults to the file's stem.
        input_size: see :class:`Source`; defaults to the model's fixed input size.
        scale: see :class:`Source`.
        preprocess: see :class:`Source`; None = the model takes raw pixels.

    Returns:
        A :class:`Source`.
    """
    require_file(path, "Source model file")
    if not path.endswith(".keras"):
        raise ConfigError(f"Source model file {path!r} must be a Keras v3 '.keras' file (model.save('x.keras')).")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ConfigError(f"Could not load source model {path!r}: {error}") from error
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", os.path.splitext(os.path.basename(path))[0])
    return Source(model, name or stem, input_size=input_size, scale=scale, preprocess=preprocess)


def _parse_spec(spec):
    """``(family, name)``: ``("imagenet", arch)``, ``("places365", arch)`` or ``("file", path)``."""
    family, slash, arch = spec.partition("/")
    if slash and family in ("imagenet", "places365") and not spec.endswith(".keras"):
        return family, arch
    return "file", spec


def check_spec(spec, places365_weights=None):
    """Validates a command-line source spec without building anything.

    Args:
        spec: ``imagenet/<arch>``, ``places365/<arch>`` or a path to a ``.keras`` file.
        places365_weights: the Places365 weights that will be used; with
            ``"places365"`` the download and conversion is checked as well.

    Raises:
        ConfigError: unknown architecture, missing file, unknown form, or
            Places365 weights that cannot be had.
    """
    family, name = _parse_spec(spec)
    if family == "imagenet":
        _imagenet_key(name)
    elif family == "places365":
        key = torch_resnet.arch_key(name)
        if places365_weights == "places365":
            check_places365_download(key)
    elif spec.endswith(".keras") or os.path.sep in spec:
        require_file(spec, "Source model file")
    else:
        raise ConfigError(
            f"Unknown source {spec!r}: use imagenet/<arch> ({', '.join(IMAGENET_ARCHS)}), "
            f"places365/<arch> ({', '.join(torch_resnet.ARCHS)}) or a path to a .keras file."
        )


def from_spec(spec, image_size, scale=7 / 3, source_image_size=None, weights="imagenet", places365_weights="places365"):
    """Builds a Source from a command-line spec.

    Args:
        spec: ``imagenet/<arch>``, ``places365/<arch>`` or a path to a ``.keras`` file.
        image_size: the target's image side length.
        scale: resize factor for ImageNet and Places365 sources
            (``floor(image_size*scale)``).
        source_image_size: explicit source side length; overrides ``scale``
            (and the input size of a ``.keras`` source with flexible inputs).
        weights: weights for ImageNet sources (``"imagenet"``, a path, None).
        places365_weights: weights for Places365 sources (see :func:`places365`).

    Returns:
        A :class:`Source`.
    """
    check_spec(spec)
    family, name = _parse_spec(spec)
    size = source_image_size or scaled_size(image_size, scale)
    if family == "imagenet":
        return imagenet(name, weights=weights, input_size=size)
    if family == "places365":
        return places365(name, weights=places365_weights, input_size=size)
    # A user's model sees its own fixed input size, else --source_image_size, else
    # the target's images unresized: the 7/3 rule is about ImageNet-sized sources.
    return from_file(spec, input_size=source_image_size)
