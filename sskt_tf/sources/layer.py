"""The :class:`Source` layer: a frozen network with its own resize and preprocessing.

A :class:`Source` wraps any Keras model. Called on raw target images (float in
[0, 255], target resolution) it resizes them to the source's input size, applies
the source's own preprocessing, and returns the frozen model's logits. It never
trains and always runs in inference mode (BatchNorm uses moving statistics).
Called on video clips ``[batch, T, H, W, 3]``, an image model sees each clip's
centre frame (frame ``T // 2``), as the paper's 2-D sources do in its video
experiments; a clip model (a 3-D KD teacher) sees the clips unchanged.
"""

import math
import re
from fractions import Fraction

import keras
from keras import ops

from sskt_tf.errors import ConfigError
from sskt_tf.sources import fold_batch_norm as fold_batch_norm_lib

PREPROCESS_MODES = ("caffe", "tf", "torch")


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


def pair(size):
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    return tuple(int(s) for s in size)


def centre_frame(clips):
    """Frame ``T // 2`` of each clip: what a 2-D source sees of a video.

    Args:
        clips: ``[batch, T, H, W, C]``.

    Returns:
        ``[batch, H, W, C]``.
    """
    return clips[:, clips.shape[1] // 2]


def fixed_input_size(model):
    """``(height, width)`` of an image model with a fixed input size; None for any size or a clip model."""
    shape = model.input_shape
    if isinstance(shape, list):
        raise ConfigError(f"Source model {model.name!r} has {len(shape)} inputs; a source takes one image input.")
    if len(shape) == 5:
        return None  # a clip model (a KD teacher for a video target) sees the clips as they come
    if len(shape) != 4:
        raise ConfigError(
            f"Source model {model.name!r} takes inputs of shape {shape}; expected images [batch, H, W, C] "
            "(or clips [batch, T, H, W, C])."
        )
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
            see :mod:`sskt_tf.sources.fold_batch_norm`). ``source.model`` is that copy.

    Call args:
        images: raw images ``[batch, H, W, 3]``, float in [0, 255], or clips
            ``[batch, T, H, W, 3]``, of which an image model sees the centre
            frame (a clip model, the whole clips, not resized).

    Returns:
        float32 source logits ``[batch, num_classes]``.

    Example:
        >>> net = keras.applications.MobileNetV2(weights=None, classifier_activation=None)
        >>> source = Source(net, "mobilenet", preprocess="tf")
        >>> source(keras.ops.zeros((2, 32, 32, 3))).shape
        (2, 1000)
    """

    def __init__(
        self,
        model,
        name,
        input_size=None,
        scale=None,
        preprocess=None,
        from_logits=None,
        fold_batch_norm=True,
        **kwargs,
    ):
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", str(name)):
            raise ConfigError(f"Source name {name!r} may use only letters, digits, '_', '-' and '.'.")
        kwargs.pop("trainable", None)
        super().__init__(name=name, trainable=False, **kwargs)
        if isinstance(preprocess, str) and preprocess not in PREPROCESS_MODES:
            raise ConfigError(f"Unknown preprocessing mode {preprocess!r}; choose one of {PREPROCESS_MODES}.")
        model.trainable = False
        self.model = fold_batch_norm_lib.fold_batch_norm(model) if fold_batch_norm else model
        self.fold_batch_norm = bool(fold_batch_norm)
        fixed = fixed_input_size(model)
        if fixed and input_size and pair(input_size) != fixed:
            raise ConfigError(f"Source {name!r} takes {fixed} inputs only, not {pair(input_size)}.")
        self.input_size = pair(input_size) or fixed
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
            images: ``[batch, H, W, 3]`` RGB pixels in [0, 255] (or clips
                ``[batch, T, H, W, 3]`` for a clip model, not resized).

        Returns:
            float32 model inputs at :meth:`output_size`.
        """
        x = ops.cast(images, "float32")
        size = self.output_size(tuple(x.shape[1:3]))
        if len(x.shape) == 4 and size != tuple(x.shape[1:3]):
            x = ops.image.resize(x, size, interpolation="bilinear")
        if isinstance(self.preprocess, str):
            return keras.applications.imagenet_utils.preprocess_input(x, mode=self.preprocess)
        if self.preprocess is not None:
            return self.preprocess(x)
        return x

    @property
    def takes_clips(self):
        """Whether the model takes clips ``[batch, T, H, W, C]`` rather than images."""
        return len(self.model.input_shape) == 5

    def call(self, images):
        if len(images.shape) == 5 and not self.takes_clips:
            images = centre_frame(images)
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
