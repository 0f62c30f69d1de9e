"""Raw train/validation splits of TensorFlow Datasets (tfds) datasets."""

import logging
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from sskt_tf import downloads
from sskt_tf.data import kinds
from sskt_tf.data import subset as subset_lib
from sskt_tf.data.pipeline import resize_uint8
from sskt_tf.data.video_pipeline import frame_loader
from sskt_tf.errors import ConfigError

# Splits and per-channel pixel statistics (0-255 scale) of the paper's datasets.
KNOWN_DATASETS = {
    "cifar10": dict(train="train", val="test", mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7)),
    "cifar100": dict(train="train", val="test", mean=(129.3, 124.1, 112.4), std=(68.2, 65.4, 70.4)),
    "stl10": dict(train="train", val="test", mean=(113.9, 112.2, 103.7), std=(66.4, 65.4, 69.2)),
    # tfds' "train+validation" is VOC's trainval (5011 images); "test" has 4952. VOC targets are
    # ImageNet-style networks, so they normalise with ImageNet's statistics, not VOC's own.
    "voc/2007": dict(
        train="train+validation", val="test", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4), multi_label=True
    ),
}

# Label value of a difficult (image, class) pair in a multi-label validation split.
DIFFICULT = -1.0


def _multi_hot(class_ids, num_classes):
    """``[num_classes]`` float32 vector with 1 at each id in ``class_ids`` (repeats and none allowed)."""
    counts = tf.reduce_sum(tf.one_hot(class_ids, num_classes, dtype=tf.float32), axis=0)
    return tf.minimum(counts, 1.0)


def voc_labels(features, num_classes, mark_difficult):
    """Multi-label targets of a tfds VOC example, following VOC's classification ground truth.

    A class is positive (1) when the image has a non-difficult object of it and
    negative (0) when it has no object of it. Classes present only as difficult
    objects are 0 for training, or ``DIFFICULT`` (-1) when ``mark_difficult``,
    so that evaluation can ignore those pairs as VOC's does.

    Args:
        features: a tfds ``voc`` example: ``labels`` (classes of all objects)
            and ``labels_no_difficult`` (classes of non-difficult objects).
        num_classes: number of classes (20).
        mark_difficult: encode difficult-only classes as -1 instead of 0.

    Returns:
        A ``[num_classes]`` float32 tensor of 1, 0 (and -1).
    """
    positive = _multi_hot(features["labels_no_difficult"], num_classes)
    if not mark_difficult:
        return positive
    difficult_only = _multi_hot(features["labels"], num_classes) * (1.0 - positive)
    return positive + DIFFICULT * difficult_only


def _offline_preparation(name):
    """How to get tfds dataset ``name`` onto a machine without internet access."""
    return (
        f"On a machine with internet access run `tfds build {name} --data_dir=DIR` "
        f"(or python -c \"import tensorflow_datasets as tfds; tfds.load('{name}', data_dir='DIR')\"), "
        "copy DIR here and pass --data_dir=DIR."
    )


def missing_tfds(name, data_dir=None, download=True):
    """What loading tfds dataset ``name`` lacks on this machine: nothing once it is prepared.

    Offline and in milliseconds: only the data directory is looked at.

    Args:
        name: a tfds name (``cifar10``, ``voc/2007``).
        data_dir: tfds data directory (None: ``~/tensorflow_datasets``).
        download: whether the run may download it (``--download``); without, no URL is given.

    Returns:
        A list of at most one :class:`~sskt_tf.downloads.Missing`; empty for a name tfds does
        not know (loading names that error). Its URL is the dataset's homepage: the up-front
        check asks whether the network answers there, not whether each mirror tfds tries is up.
    """
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # tfds warns that an unprepared dataset's folder has no dataset_info.json
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            return []
        homepage = builder.info.homepage or "https://www.tensorflow.org/datasets"
    except Exception:  # an unknown name or version: the loader reports it with tfds' own message
        return []
    finally:
        absl_logger.setLevel(level)
    where = data_dir or "~/tensorflow_datasets"
    how = _offline_preparation(name)
    return [
        downloads.Missing(
            what=f"Dataset {name!r} is not prepared in {where}" + ("." if download else " and --download is off."),
            offline=f"Offline: {how[0].lower()}{how[1:]}",
            url=homepage if download else "",
        )
    ]


def _prepare(builder, name, data_dir, download):
    """Makes sure ``builder``'s data exists locally, downloading it if allowed."""
    if builder.is_prepared():
        return
    where = data_dir or "~/tensorflow_datasets"
    how = _offline_preparation(name)
    if not download:
        raise ConfigError(f"Dataset {name!r} is not prepared in {where} and --download is off. {how}")
    logging.warning(
        "Dataset %s is not in %s; downloading and preparing it. This needs internet access: offline, "
        "tfds retries for a few minutes before giving up (use --nodownload to fail at once).",
        name,
        where,
    )
    try:
        builder.download_and_prepare()
    except Exception as error:  # network errors surface as many different types
        raise ConfigError(
            f"Could not download dataset {name!r} into {where}: {type(error).__name__}: {error}. {how}"
        ) from error


def _label_feature(features, multi_label):
    """The ``ClassLabel`` feature naming the classes."""
    return features["labels"].feature if multi_label else features["label"]


def _media_key(features):
    """The feature holding the pixels: ``"image"``, or ``"video"`` (frames ``[T, H, W, 3]``, e.g. ucf101)."""
    return "video" if "video" in features and "image" not in features else "image"


def _examples(builder, split, multi_label, mark_difficult):
    """``(uint8 image, label)`` examples of one split, in the dataset's own order.

    Videos come with their frames still encoded (string ``[T]``), so that a clip
    decodes only its own frames (:func:`sskt_tf.data.video_pipeline.frame_loader`).
    """
    media = _media_key(builder.info.features)
    if media == "video":
        encoded = {"video": tfds.decode.SkipDecoding()}
        return builder.as_dataset(split=split, shuffle_files=False, decoders=encoded).map(
            lambda example: (example["video"], example["label"]), num_parallel_calls=tf.data.AUTOTUNE
        )
    if not multi_label:
        return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    num_classes = _label_feature(builder.info.features, multi_label).num_classes
    return builder.as_dataset(split=split, shuffle_files=False).map(
        lambda example: (example["image"], voc_labels(example, num_classes, mark_difficult)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _split_labels(builder, split):
    """Every label of a single-label split, in the split's order, read without decoding the images."""
    skip = {_media_key(builder.info.features): tfds.decode.SkipDecoding()}
    labels = builder.as_dataset(split=split, shuffle_files=False, decoders=skip)
    batches = labels.map(lambda example: example["label"]).batch(65536)
    return np.concatenate([batch.numpy() for batch in batches]) if int(batches.cardinality()) else np.zeros(0, np.int64)


def _apply_subset(builder, split, subset, train, val, info):
    """``train``, ``val`` and ``info`` restricted to ``subset`` (see :mod:`sskt_tf.data.subset`)."""
    if info["multi_label"]:
        raise ConfigError(
            f"--classes and --train_examples_per_class select single-label classes; {builder.name} is multi-label."
        )
    labels = _split_labels(builder, split)
    kept = subset_lib.plan(subset, labels, info["class_names"])
    train_all = train
    train = subset_lib.relabel(
        subset_lib.take_positions(train, kept.train_positions, len(labels)), kept, info["num_classes"]
    )
    val = subset_lib.relabel(val, kept, info["num_classes"])
    rest = subset_lib.take_positions(train_all, kept.rest_positions, len(labels)).map(
        lambda image, label: (image, tf.constant(-1, tf.int64))
    )
    info = dict(
        info,
        num_classes=len(kept.class_indices),
        class_names=list(kept.class_names),
        train_examples=len(kept.train_positions),
        subset=kept.description(),
        rest_train=(rest, len(kept.rest_positions)),
    )
    return train, val, info


def load_tfds(name, data_dir=None, download=True, train_split=None, val_split=None, subset=None):
    """Loads a tfds image (or video) classification dataset as raw examples.

    Args:
        name: tfds name, e.g. ``"cifar10"``, ``"cifar100"``, ``"stl10"``, the
            multi-label ``"voc/2007"``, or a video dataset such as
            ``"ucf101/ucf101_1"`` (its ``video`` feature: frames ``[T]`` still
            encoded, for :func:`sskt_tf.data.video_pipeline.frame_loader`).
        data_dir: tfds data directory (default ``~/tensorflow_datasets``).
        download: download and prepare the dataset if it is not there.
        train_split: split to train on (default ``"train"``; VOC 2007: its
            trainval, ``"train+validation"``).
        val_split: split to validate on (default ``"test"``).
        subset: a :class:`sskt_tf.data.subset.Subset` to keep (None:
            everything; single-label datasets only).

    Returns:
        ``(train, val, info)``: datasets of ``(uint8 image, int label)`` and a
        dict with ``num_classes``, ``image_shape``, ``class_names``,
        ``train_examples`` (or None), ``mean`` and ``std`` (or None) and
        ``multi_label``. Multi-label datasets (VOC) yield float32 label vectors
        ``[num_classes]`` instead: 1/0 in ``train``; in ``val`` also -1
        (``DIFFICULT``) for pairs to ignore in evaluation (see :func:`voc_labels`).
        With an active ``subset``, ``info["subset"]`` describes it
        (:meth:`sskt_tf.data.subset.SubsetPlan.description`).
    """
    known = KNOWN_DATASETS.get(name, {})
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ConfigError(
            f"Unknown dataset {name!r}: use a tfds name (cifar10, cifar100, stl10, ...) or folder:PATH."
        ) from error
    features = builder.info.features
    multi_label = known.get("multi_label", False)
    media = _media_key(features)
    if media not in features or not (multi_label or "label" in features):
        raise ConfigError(
            f"tfds dataset {name!r} has no 'image' (or 'video') and 'label' features and is not a known multi-label "
            "dataset "
            f"({', '.join(n for n, k in KNOWN_DATASETS.items() if k.get('multi_label'))}); "
            "it is not an image classification dataset."
        )
    _prepare(builder, name, data_dir, download)
    splits = (train_split or known.get("train", "train"), val_split or known.get("val", "test"))
    try:
        train = _examples(builder, splits[0], multi_label, mark_difficult=False)
        val = _examples(builder, splits[1], multi_label, mark_difficult=True)
    except (ValueError, KeyError) as error:
        raise ConfigError(f"Dataset {name!r} has no split among {splits}: {error}") from error
    try:
        train_examples = builder.info.splits[splits[0]].num_examples or None
    except (KeyError, ValueError):
        train_examples = None
    cardinality = int(train.cardinality())
    if cardinality > 0:
        train_examples = cardinality
    label_feature = _label_feature(features, multi_label)
    info = dict(
        num_classes=label_feature.num_classes,
        image_shape=tuple(features[media].shape),
        video=media == "video",
        class_names=list(label_feature.names),
        train_examples=train_examples,
        mean=known.get("mean"),
        std=known.get("std"),
        multi_label=multi_label,
    )
    if subset is not None and subset.active:
        train, val, info = _apply_subset(builder, splits[0], subset, train, val, info)
    if info["image_shape"][-1] == 1:
        train, val = (_to_rgb(ds) for ds in (train, val))
        if "rest_train" in info:
            info["rest_train"] = (_to_rgb(info["rest_train"][0]), info["rest_train"][1])
    return train, val, info


def _to_rgb(dataset):
    return dataset.map(lambda image, label: (tf.image.grayscale_to_rgb(image), label))


def load_tfds_unlabeled(name, split, data_dir=None, download=True):
    """A tfds split's images as unlabelled examples (``stl10``'s ``unlabelled``, or any split).

    Args:
        name: tfds name.
        split: the split (tfds split syntax, e.g. ``unlabelled`` or ``train[:10%]``).
        data_dir: tfds data directory.
        download: download and prepare the dataset if it is not there.

    Returns:
        ``(dataset, count)``: ``(uint8 image, -1)`` examples in the split's order
        (labels, if the split has any, are never read), and their number.
    """
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ConfigError(f"Unknown tfds dataset {name!r} in --unlabeled_dataset={name}:{split}.") from error
    if "image" not in builder.info.features:
        raise ConfigError(f"tfds dataset {name!r} has no 'image' feature: --unlabeled_dataset needs images.")
    _prepare(builder, name, data_dir, download)
    try:
        images = builder.as_dataset(split=split, shuffle_files=False)
        count = int(images.cardinality())
    except (ValueError, KeyError) as error:
        raise ConfigError(f"tfds dataset {name!r} has no split {split!r}: {error}") from error
    dataset = images.map(lambda example: (example["image"], tf.constant(-1, tf.int64)))
    if builder.info.features["image"].shape[-1] == 1:
        dataset = _to_rgb(dataset)
    return dataset, count


def _resized(dataset, image_size):
    return dataset.map(
        lambda image, label: (resize_uint8(image, image_size), label), num_parallel_calls=tf.data.AUTOTUNE
    )


def _load_images(name, image_size, data_dir, download, order_seed, subset):
    del order_seed  # tfds datasets keep their own order
    train, val, info = load_tfds(name, data_dir=data_dir, download=download, subset=subset)
    native = info["image_shape"][0]
    if native is None and not image_size:
        raise ConfigError(f"Images of {name!r} vary in size: pass --image_size.")
    if image_size and image_size != native:
        train, val = _resized(train, image_size), _resized(val, image_size)
    return train, val, info, image_size or native


def _load_videos(name, data_dir, download, split, subset, short_side):
    if split:
        raise ConfigError(f"--video_split is for video_folder: datasets; tfds {name!r} has its own splits.")
    train, val, info = load_tfds(name, data_dir=data_dir, download=download, subset=subset)
    if not info.get("video"):
        raise ConfigError(f"tfds dataset {name!r} holds images, not videos.")
    return kinds.VideoSplits(
        train=train,
        val=val,
        info=info,
        decode=tf.identity,
        load=frame_loader(short_side),  # a clip decodes only its own frames
        shuffle_buffer=256,  # encoded videos (a few MB each); tfds reads its files in a fixed order
    )


def _split_name(location):
    """``(name, split)`` of an ``--unlabeled_dataset`` value ``NAME:SPLIT``."""
    name, _, split = location.partition(":")
    return name, split


def _check_unlabeled(location):
    name, split = _split_name(location)
    if not (name and split):
        raise ConfigError(
            f"--unlabeled_dataset={location}: use folder:DIR (a directory of images) or a tfds split "
            "as NAME:SPLIT (e.g. stl10:unlabelled)."
        )


def _load_unlabeled(location, image_size, data_dir, download):
    images, count = load_tfds_unlabeled(*_split_name(location), data_dir=data_dir, download=download)
    return _resized(images, image_size), count


def _holds_videos(name, data_dir):
    try:
        features = tfds.builder(name, data_dir=data_dir).info.features
    except Exception:  # unknown names are reported where the dataset is loaded
        return False
    return "video" in features and "image" not in features


def _check(name):
    """A bare directory is not a tfds name: say which prefix it needs."""
    if os.path.isdir(os.path.expanduser(name)):
        prefixed = [kind for kind in kinds.kinds() if kind.prefix]
        uses = " or ".join(f"--dataset={kind.prefix}{name}" for kind in prefixed)
        raise ConfigError(f"--dataset={name} is a directory: use {uses} ({'; '.join(k.summary for k in prefixed)}).")


kinds.register(
    kinds.DatasetKind(
        name="tfds",
        summary="a TensorFlow Datasets name (cifar10, cifar100, stl10, voc/2007, ucf101/ucf101_1, ...)",
        load_images=_load_images,
        load_videos=_load_videos,
        load_unlabeled=_load_unlabeled,
        holds_videos=_holds_videos,
        missing=lambda location, data_dir, download: missing_tfds(_split_name(location)[0], data_dir, download),
        check=_check,
        check_unlabeled=_check_unlabeled,
    )
)
