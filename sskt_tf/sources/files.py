"""Sources from saved Keras models (``.keras`` files)."""

import os
import re
import zipfile

import keras

from sskt_tf.errors import ConfigError
from sskt_tf.sources import registry
from sskt_tf.sources.layer import Source, fixed_input_size


def require_file(path, what):
    """Raises a ConfigError naming ``what`` when ``path`` does not exist."""
    if not os.path.exists(path):
        raise ConfigError(f"{what} {path!r} does not exist.")


def load_keras_file(path, what):
    """Loads a ``.keras`` model, or raises a ConfigError that says what is wrong with the file.

    Args:
        path: the file.
        what: how to name it in messages (``"Source model file"``, ``"--pretrained"``, ...).

    Returns:
        The ``keras.Model`` (not compiled).
    """
    require_file(path, what)
    if os.path.isdir(path):
        raise ConfigError(f"{what} {path!r} is a directory, not a .keras file.")
    if not path.endswith(".keras"):
        raise ConfigError(f"{what} {path!r} must be a Keras v3 '.keras' file (model.save('x.keras')).")
    if os.path.getsize(path) == 0:
        raise ConfigError(f"{what} {path!r} is empty (0 bytes): an interrupted copy or save?")
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"{what} {path!r} is not a .keras archive (a .keras file is a zip; this one is truncated or of "
            "another format)."
        )
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ConfigError(f"{what} {path!r} could not be loaded: {error}") from error


def from_file(path, name=None, input_size=None, scale=None, preprocess=None):
    """A saved ``.keras`` model as a Source.

    Args:
        path: the ``.keras`` file.
        name: source name; defaults to the file's stem.
        input_size: the side the source resizes images to when the model takes
            any size; a model with a fixed input size always sees that size.
        scale: see :class:`Source`.
        preprocess: see :class:`Source`; None = the model takes raw pixels.

    Returns:
        A :class:`Source`.
    """
    model = load_keras_file(path, "Source model file")
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", os.path.splitext(os.path.basename(path))[0])
    size = fixed_input_size(model) or input_size
    return Source(model, name or stem, input_size=size, scale=scale, preprocess=preprocess)


def check_source_file(path):
    """Loads a source file and checks that it returns ``[batch, classes]``, as every source must.

    Args:
        path: the ``.keras`` file.

    Raises:
        ConfigError: naming the file and its output shape (a feature map, several outputs, ...).
    """
    model = load_keras_file(path, "Source model file")
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2:
        raise ConfigError(
            f"Source model file {path!r} returns outputs of shape {shape}; a source must return one "
            "[batch, classes] tensor of logits or probabilities (end it with pooling and a Dense layer)."
        )


def _claims(spec):
    """A spec ending in .keras, or naming an existing file (refused later if it is not a .keras model)."""
    return spec.endswith(".keras") or os.path.isfile(os.path.expanduser(spec))


registry.register(
    registry.SourceFamily(
        name="keras_file",
        summary="a path to a .keras model (raw pixels in, [batch, classes] out)",
        build=lambda path, weights, input_size: from_file(path, input_size=input_size),
        check=lambda path, weights: require_file(path, "Source model file"),
        inspect=lambda path, weights: check_source_file(path),
        claims=_claims,
        scaled=False,
    )
)
