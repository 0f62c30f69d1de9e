"""Sources from saved Keras models (``.keras`` files)."""

import os
import re

import keras

from sskt_tf.errors import ConfigError
from sskt_tf.sources.layer import Source


def require_file(path, what):
    """Raises a ConfigError naming ``what`` when ``path`` does not exist."""
    if not os.path.exists(path):
        raise ConfigError(f"{what} {path!r} does not exist.")


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
