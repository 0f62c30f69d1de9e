"""ImageNet sources: ``keras.applications`` classifiers as :class:`Source` layers."""

import os

import keras

from sskt_tf import downloads
from sskt_tf.errors import ConfigError
from sskt_tf.sources import registry
from sskt_tf.sources.files import require_file
from sskt_tf.sources.layer import Source, pair

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


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications"
# Where keras.applications downloads each classifier's ImageNet weights (with the top), as of Keras 3.15;
# the file keeps its name in Keras' cache (~/.keras/models/).
IMAGENET_WEIGHTS_URLS = {
    **{
        arch: f"{_KERAS_WEIGHTS}/{folder}/{arch}_weights_tf_dim_ordering_tf_kernels.h5"
        for arch, folder in (
            ("resnet50", "resnet"),
            ("resnet101", "resnet"),
            ("resnet152", "resnet"),
            ("resnet50v2", "resnet"),
            ("resnet101v2", "resnet"),
            ("resnet152v2", "resnet"),
            ("vgg16", "vgg16"),
            ("vgg19", "vgg19"),
            ("densenet121", "densenet"),
        )
    },
    "mobilenetv2": f"{_KERAS_WEIGHTS}/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
    "efficientnetb0": "https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
    "efficientnetb1": "https://storage.googleapis.com/keras-applications/efficientnetb1.h5",
}


# Architectures whose classifier flattens a fixed-size map (input must be 224).
_FIXED_INPUT_ARCHS = ("vgg16", "vgg19")


def imagenet_key(arch):
    """The ``IMAGENET_ARCHS`` key of ``arch``; a ConfigError if there is none."""
    key = arch.lower()
    if key not in IMAGENET_ARCHS:
        raise ConfigError(f"Unknown ImageNet architecture {arch!r}; choose one of {', '.join(IMAGENET_ARCHS)}.")
    return key


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
    key = imagenet_key(arch)
    if weights not in (None, "imagenet"):
        require_file(weights, f"Weights file for imagenet/{key}")
    size = pair(input_size)
    if key in _FIXED_INPUT_ARCHS and size != (224, 224):
        raise ConfigError(
            f"{arch} flattens a 7x7 map into its classifier, so it only takes 224x224 inputs "
            f"(asked for {size}); use --source_image_size=224 or another architecture."
        )
    constructor_name, mode = IMAGENET_ARCHS[key]
    model = _load_application(getattr(keras.applications, constructor_name), weights, size)
    return Source(model, name or f"imagenet_{key}", input_size=size, preprocess=mode, from_logits=True)


def missing_weights(arch, weights):
    """The ImageNet weights file Keras would download for ``arch``, when it is not in Keras' cache yet.

    Args:
        arch: one of ``IMAGENET_ARCHS``.
        weights: ``"imagenet"``, None or a path (only ``"imagenet"`` downloads).

    Returns:
        A :class:`~sskt_tf.downloads.Missing`, or None.
    """
    if weights != "imagenet":
        return None
    url = IMAGENET_WEIGHTS_URLS[imagenet_key(arch)]
    file_name = url.rsplit("/", 1)[1]
    cached = downloads.keras_model_cache(file_name)
    if os.path.exists(cached):
        return None
    return downloads.Missing(
        what=f"The ImageNet weights of imagenet/{arch} are not in Keras' cache ({cached}).",
        offline=f"Offline: download {url} on a connected machine and copy it there, or pass --source_weights=PATH.",
        url=url,
    )


registry.register(
    registry.SourceFamily(
        name="keras_applications",
        prefix="imagenet",
        archs=tuple(IMAGENET_ARCHS),
        summary="keras.applications ImageNet classifiers (weights downloaded by Keras, or --source_weights=PATH)",
        build=lambda arch, weights, input_size: imagenet(arch, weights, input_size),
        weights_flag="source_weights",
        weights_keyword="imagenet",
        missing=missing_weights,
        num_classes=1000,
    )
)
