"""Raw train/validation splits of TensorFlow Datasets (tfds) datasets."""

import logging

import tensorflow as tf
import tensorflow_datasets as tfds

from sskt_tf.errors import ConfigError

# Splits and per-channel pixel statistics (0-255 scale) of the paper's datasets.
KNOWN_DATASETS = {
    "cifar10": dict(train="train", val="test", mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7)),
    "cifar100": dict(train="train", val="test", mean=(129.3, 124.1, 112.4), std=(68.2, 65.4, 70.4)),
    "stl10": dict(train="train", val="test", mean=(113.9, 112.2, 103.7), std=(66.4, 65.4, 69.2)),
}


def _prepare(builder, name, data_dir, download):
    """Makes sure ``builder``'s data exists locally, downloading it if allowed."""
    if builder.is_prepared():
        return
    where = data_dir or "~/tensorflow_datasets"
    how = (
        f"On a machine with internet access run `tfds build {name} --data_dir=DIR` "
        f"(or python -c \"import tensorflow_datasets as tfds; tfds.load('{name}', data_dir='DIR')\"), "
        "copy DIR here and pass --data_dir=DIR."
    )
    if not download:
        raise ConfigError(f"Dataset {name!r} is not prepared in {where} and --download is off. {how}")
    logging.warning(
        "Dataset %s is not in %s; downloading and preparing it. This needs internet access: offline, "
        "tfds retries for a few minutes before giving up (use --nodownload to fail at once).", name, where,
    )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network errors surface as many different types
        raise ConfigError(
            f"Could not download dataset {name!r} into {where}: {type(error).__name__}: {error}. {how}"
        ) from error


def load_tfds(name, data_dir=None, download=True, train_split=None, val_split=None):
    """Loads a tfds image classification dataset as raw examples.

    Args:
        name: tfds name, e.g. ``"cifar10"``, ``"cifar100"``, ``"stl10"``.
        data_dir: tfds data directory (default ``~/tensorflow_datasets``).
        download: download and prepare the dataset if it is not there.
        train_split: split to train on (default ``"train"``).
        val_split: split to validate on (default ``"test"``).

    Returns:
        ``(train, val, info)``: datasets of ``(uint8 image, int label)`` and a
        dict with ``num_classes``, ``image_shape``, ``class_names``,
        ``train_examples`` (or None), ``mean`` and ``std`` (or None).
    """
    known = KNOWN_DATASETS.get(name, {})
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ConfigError(
            f"Unknown dataset {name!r}: use a tfds name (cifar10, cifar100, stl10, ...) or folder:PATH."
        ) from error
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ConfigError(f"tfds dataset {name!r} has no 'image' and 'label' features; it is not an image classification dataset.")
    _prepare(builder, name, data_dir, download)
    splits = (train_split or known.get("train", "train"), val_split or known.get("val", "test"))
    try:
        train, val = (builder.as_dataset(split=split, as_supervised=True, shuffle_files=False) for split in splits)
    except (ValueError, KeyError) as error:
        raise ConfigError(f"Dataset {name!r} has no split among {splits}: {error}") from error
    try:
        train_examples = builder.info.splits[splits[0]].num_examples or None
    except (KeyError, ValueError):
        train_examples = None
    cardinality = int(train.cardinality())
    if cardinality > 0:
        train_examples = cardinality
    info = dict(
        num_classes=features["label"].num_classes,
        image_shape=tuple(features["image"].shape),
        class_names=list(features["label"].names),
        train_examples=train_examples,
        mean=known.get("mean"),
        std=known.get("std"),
    )
    if info["image_shape"][-1] == 1:
        train, val = (ds.map(lambda image, label: (tf.image.grayscale_to_rgb(image), label)) for ds in (train, val))
    return train, val, info
