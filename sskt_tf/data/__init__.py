"""Datasets for SSKT: tfds datasets or a user's image folder, as tf.data pipelines.

Datasets yield raw pixels (float32 in [0, 255]) and integer labels (multi-label
datasets such as VOC: float32 label vectors, see :func:`load_tfds`); models do
their own normalisation.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from sskt_tf.data.augment import pad_crop_flip
from sskt_tf.data.folder import load_folder
from sskt_tf.data.pipeline import eval_pipeline, resize_uint8, train_pipeline
from sskt_tf.data.subset import Subset
from sskt_tf.data.tfds_datasets import DIFFICULT, KNOWN_DATASETS, load_tfds, voc_labels
from sskt_tf.data.views import view_batches
from sskt_tf.errors import ConfigError

FOLDER_PREFIX = "folder:"
DEFAULT_FOLDER_IMAGE_SIZE = 32


@dataclasses.dataclass
class Data:
    """Training and validation batches plus what models need to know.

    Attributes:
        train: augmented, shuffled ``(images, labels)`` batches.
        val: ``(images, labels)`` batches in order.
        num_classes: number of target classes.
        image_size: side length of the images.
        class_names: class names in label order.
        train_examples: training-set size, when known.
        mean: per-channel pixel mean (0-255), when known.
        std: per-channel pixel standard deviation (0-255), when known.
        multi_label: labels are float vectors ``[num_classes]`` (1 positive,
            0 negative; validation also -1 = difficult, to be ignored) rather
            than class indices.
        subset: the kept classes and training examples
            (:meth:`sskt_tf.data.subset.SubsetPlan.description`), or None
            when the whole dataset is used.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    num_classes: int
    image_size: int
    class_names: list
    train_examples: Optional[int] = None
    mean: Optional[tuple] = None
    std: Optional[tuple] = None
    multi_label: bool = False
    subset: Optional[dict] = None


def _resize(dataset, image_size):
    return dataset.map(
        lambda image, label: (resize_uint8(image, image_size), label), num_parallel_calls=tf.data.AUTOTUNE
    )


@dataclasses.dataclass
class Splits:
    """A dataset's examples before batching: ``(uint8 image, label)`` in a fixed order.

    Attributes:
        train: training examples, always in the same order (the soft-label
            cache identifies them by their position).
        val: validation examples.
        image_size: side length of the images.
        info: ``num_classes``, ``class_names``, ``train_examples``, ``mean``,
            ``std`` and ``multi_label`` (see :func:`load_tfds`; a missing
            ``multi_label`` means False).
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    image_size: int
    info: dict

    def data(self, train, val):
        """A :class:`Data` of the pipelines ``train`` and ``val`` built on these splits."""
        return Data(
            train=train,
            val=val,
            num_classes=self.info["num_classes"],
            image_size=self.image_size,
            class_names=self.info["class_names"],
            train_examples=self.info["train_examples"],
            mean=self.info["mean"],
            std=self.info["std"],
            multi_label=self.info.get("multi_label", False),
            subset=self.info.get("subset"),
        )


def load_splits(dataset, data_dir=None, image_size=None, download=True, order_seed=None, subset=None):
    """Loads a dataset's training and validation examples, resized, unbatched.

    Args:
        dataset: a tfds name (``cifar10``, ``cifar100``, ``stl10``,
            ``voc/2007``, ...) or ``folder:PATH``.
        data_dir: tfds data directory.
        image_size: side length; None keeps a tfds dataset's own size (folder
            datasets default to 32; datasets of varying image size, such as
            ``voc/2007``, need one: the paper uses 224).
        download: let tfds download a dataset that is not prepared yet.
        order_seed: seed of the one-off mixing of a folder's training files
            (None: 0); tfds datasets keep their own order.
        subset: a :class:`Subset` (classes, examples per class) to keep; its
            description is ``info["subset"]``.

    Returns:
        A :class:`Splits`.
    """
    if dataset.startswith(FOLDER_PREFIX):
        image_size = image_size or DEFAULT_FOLDER_IMAGE_SIZE
        train, val, info = load_folder(dataset[len(FOLDER_PREFIX) :], image_size, seed=order_seed, subset=subset)
        info = dict(info, multi_label=False)
    else:
        train, val, info = load_tfds(dataset, data_dir=data_dir, download=download, subset=subset)
        native = info["image_shape"][0]
        if native is None and not image_size:
            raise ConfigError(f"Images of {dataset!r} vary in size: pass --image_size.")
        if image_size and image_size != native:
            train, val = _resize(train, image_size), _resize(val, image_size)
        image_size = image_size or native
    return Splits(train=train, val=val, image_size=image_size, info=info)


def load(
    dataset,
    batch_size,
    data_dir=None,
    image_size=None,
    seed=None,
    augment=True,
    download=True,
    cache=True,
    eval_batch_size=None,
    subset=None,
):
    """Loads a dataset as training and validation pipelines.

    Args:
        dataset: a tfds name (``cifar10``, ``cifar100``, ``stl10``, ...) or
            ``folder:PATH``.
        batch_size: global training batch size.
        data_dir: tfds data directory.
        image_size: side length; None keeps a tfds dataset's own size (folder
            datasets default to 32).
        seed: shuffling/augmentation seed (None: not reproducible).
        augment: pad-4 random crop and horizontal flip on training images.
        download: let tfds download a dataset that is not prepared yet.
        cache: cache decoded images in memory.
        eval_batch_size: validation batch size (default ``batch_size``).
        subset: a :class:`Subset` to keep (None: everything).

    Returns:
        A :class:`Data`.
    """
    splits = load_splits(
        dataset, data_dir=data_dir, image_size=image_size, download=download, order_seed=seed, subset=subset
    )
    return splits.data(
        train=train_pipeline(splits.train, batch_size, seed=seed, augment=augment, cache=cache),
        val=eval_pipeline(splits.val, eval_batch_size or batch_size, cache=cache),
    )


__all__ = [
    "DIFFICULT",
    "Data",
    "KNOWN_DATASETS",
    "Splits",
    "Subset",
    "eval_pipeline",
    "load",
    "load_folder",
    "load_splits",
    "load_tfds",
    "pad_crop_flip",
    "train_pipeline",
    "view_batches",
    "voc_labels",
]
