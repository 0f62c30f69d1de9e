"""Datasets for SSKT: tfds datasets or a user's image or video folder, as tf.data pipelines.

Datasets yield raw pixels (float32 in [0, 255]) and integer labels (multi-label
datasets such as VOC: float32 label vectors, see :func:`load_tfds`); models do
their own normalisation. Video datasets (tfds ``ucf101``, ``video_folder:PATH``)
yield clips ``[batch, frames, size, size, 3]`` (:func:`load_video`).
"""

import dataclasses
from typing import Any, Callable, Optional

import tensorflow as tf

# The loader modules register their dataset kinds (sskt_tf.data.kinds) as they are imported.
from sskt_tf.data import (
    kinds,
    video_folder,  # noqa: F401 (registers the video_folder kind)
)
from sskt_tf.data.augment import pad_crop_flip
from sskt_tf.data.folder import load_folder
from sskt_tf.data.pipeline import eval_pipeline, fixed_seed, keyed_train_pipeline, train_pipeline
from sskt_tf.data.subset import Subset
from sskt_tf.data.tfds_datasets import DIFFICULT, KNOWN_DATASETS, load_tfds, voc_labels
from sskt_tf.data.unlabeled import UNLABELED, UnlabeledImages
from sskt_tf.data.video_pipeline import train_clips, validation_clips, video_clip_stacks
from sskt_tf.data.views import view_batches
from sskt_tf.errors import ConfigError

# The paper's video clips: 16 frames of 112x112, cropped from frames whose short side is about this.
DEFAULT_CLIP_LENGTH = 16
DEFAULT_CLIP_SIZE = 112
DEFAULT_VIDEO_SHORT_SIDE = 128


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
        frames: clip length of a video dataset (``train``/``val`` yield clips
            ``[batch, frames, image_size, image_size, 3]``); None for images.
        video_test: a video dataset's validation videos as stacks of every
            clip, one video an element (:func:`video_clip_stacks`), for video
            accuracy; None for images.
        steps_per_epoch: batches per epoch when ``train`` holds every
            remaining epoch (epoch-keyed batches, :func:`keyed_train_pipeline`,
            or cached soft labels); None when it holds one epoch.
        batches_from_epoch: with ``steps_per_epoch``, a function of an epoch that
            returns the training batches from that epoch on (``train`` is
            those of the first epoch to train); else None.
        unlabeled_examples: unlabelled training images (:mod:`sskt_tf.data.unlabeled`).
        unlabeled_per_batch: unlabelled examples in every training batch,
            besides the labelled ones (0: none).
        soft_label_cache: the :class:`sskt_tf.soft_labels.SoftLabelCache` whose
            logits the training batches carry (its placeholders then stand for
            the sources); None when the sources run in the step.
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
    frames: Optional[int] = None
    video_test: Optional[tf.data.Dataset] = None
    steps_per_epoch: Optional[int] = None
    batches_from_epoch: Optional[Callable[[int], tf.data.Dataset]] = None
    unlabeled_examples: int = 0
    unlabeled_per_batch: int = 0
    soft_label_cache: Optional[Any] = None

    @property
    def train_from(self):
        """The former name of :attr:`batches_from_epoch`, kept for code written against it."""
        return self.batches_from_epoch


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
        unlabeled: unlabelled training examples ``(uint8 image, -1)`` in a
            fixed order (:mod:`sskt_tf.data.unlabeled`), or None.
        unlabeled_examples: their number.
    """

    train: tf.data.Dataset
    val: tf.data.Dataset
    image_size: int
    info: dict
    unlabeled: Optional[tf.data.Dataset] = None
    unlabeled_examples: int = 0

    def with_unlabeled(self):
        """The training examples followed by the unlabelled ones (what a soft-label cache covers)."""
        return self.train if self.unlabeled is None else self.train.concatenate(self.unlabeled)

    def data(
        self, train, val, steps_per_epoch=None, batches_from_epoch=None, unlabeled_per_batch=0, soft_label_cache=None
    ):
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
            steps_per_epoch=steps_per_epoch,
            batches_from_epoch=batches_from_epoch,
            unlabeled_examples=self.unlabeled_examples,
            unlabeled_per_batch=unlabeled_per_batch,
            soft_label_cache=soft_label_cache,
        )

    def epoch_keyed_data(self, batches_from_epoch, val, start_epoch, steps_per_epoch, unlabeled_per_batch, **extras):
        """A :class:`Data` whose training batches are ``batches_from_epoch(start_epoch)``.

        Args:
            batches_from_epoch: a function of an epoch returning the batches of every
                epoch from it on (a resumed run asks it again).
            val: the validation pipeline.
            start_epoch: the first epoch to train.
            steps_per_epoch: batches an epoch.
            unlabeled_per_batch: unlabelled examples in every batch.
            **extras: other :meth:`data` arguments (``soft_label_cache``).

        Returns:
            A :class:`Data`.
        """
        return self.data(
            batches_from_epoch(start_epoch),
            val,
            steps_per_epoch=steps_per_epoch,
            batches_from_epoch=batches_from_epoch,
            unlabeled_per_batch=unlabeled_per_batch,
            **extras,
        )


def load_splits(dataset, data_dir=None, image_size=None, download=True, order_seed=None, subset=None, unlabeled=None):
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
        unlabeled: an :class:`UnlabeledImages` whose images join the
            training examples unlabelled (None: none).

    Returns:
        A :class:`Splits`.
    """
    kind, location = kinds.resolve(dataset)
    if kind.load_images is None:
        raise ConfigError(f"--dataset={dataset} holds videos: train a video target on it (see --target).")
    train, val, info, image_size = kind.load_images(location, image_size, data_dir, download, order_seed, subset)
    rest = info.pop("rest_train", None)
    splits = Splits(train=train, val=val, image_size=image_size, info=info)
    if unlabeled is not None and unlabeled.active:
        splits.unlabeled, splits.unlabeled_examples = unlabeled.load(rest, image_size, data_dir, download)
    return splits


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
    epochs=None,
    start_epoch=0,
    steps_per_epoch=None,
    unlabeled=None,
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
        epochs: the run's number of epochs. With it (and ``cache``), the
            training batches cover epochs ``start_epoch .. epochs - 1`` and
            each epoch's batches depend only on ``seed`` and the epoch
            (:func:`keyed_train_pipeline`): resumed runs and every worker see
            what one uninterrupted process sees. None (or no ``cache``): one
            reshuffled epoch per pass (:func:`train_pipeline`).
        start_epoch: the first epoch to train (a resumed run's).
        steps_per_epoch: batches per epoch (default: one pass over the
            training examples).
        unlabeled: an :class:`UnlabeledImages` to add to every batch (needs
            ``epochs`` and ``cache``).

    Returns:
        A :class:`Data`.
    """
    splits = load_splits(
        dataset,
        data_dir=data_dir,
        image_size=image_size,
        download=download,
        order_seed=seed,
        subset=subset,
        unlabeled=unlabeled,
    )
    return pipelines(
        splits,
        batch_size,
        seed=seed,
        augment=augment,
        cache=cache,
        eval_batch_size=eval_batch_size,
        epochs=epochs,
        start_epoch=start_epoch,
        steps_per_epoch=steps_per_epoch,
        unlabeled=unlabeled,
    )


def pipelines(
    splits,
    batch_size,
    seed=None,
    augment=True,
    cache=True,
    eval_batch_size=None,
    epochs=None,
    start_epoch=0,
    steps_per_epoch=None,
    unlabeled=None,
):
    """The training and validation pipelines of loaded ``splits`` (what :func:`load` returns).

    Args:
        splits: :class:`Splits` from :func:`load_splits`.
        batch_size, seed, augment, cache, eval_batch_size, epochs, start_epoch,
        steps_per_epoch, unlabeled: as for :func:`load`.

    Returns:
        A :class:`Data`.
    """
    val = eval_pipeline(splits.val, eval_batch_size or batch_size, cache=cache)
    examples = splits.info["train_examples"]
    if not (epochs and cache and examples):
        if splits.unlabeled is not None:
            raise ConfigError("Unlabelled images need epoch-keyed batches: keep --cache on.")
        return splits.data(train_pipeline(splits.train, batch_size, seed=seed, augment=augment, cache=cache), val)
    steps_per_epoch = steps_per_epoch or examples // batch_size
    seed = fixed_seed(seed)  # one for every batches_from_epoch
    per_batch = unlabeled.per_batch(batch_size) if splits.unlabeled is not None else 0

    def batches_from_epoch(epoch):
        return keyed_train_pipeline(
            splits.train,
            batch_size,
            steps_per_epoch,
            examples,
            seed,
            augment,
            start_epoch=epoch,
            epochs=epochs,
            unlabeled=splits.unlabeled,
            unlabeled_examples=splits.unlabeled_examples,
            unlabeled_per_batch=per_batch,
        )

    return splits.epoch_keyed_data(batches_from_epoch, val, start_epoch, steps_per_epoch, per_batch)


def missing_data(dataset, data_dir=None, download=True):
    """What loading ``dataset`` (a ``--dataset`` or ``--unlabeled_dataset`` value) lacks on this machine.

    Offline and in milliseconds (each kind's :attr:`~sskt_tf.data.kinds.DatasetKind.missing`):
    a folder must exist, a tfds dataset be prepared (or downloadable).

    Args:
        dataset: ``folder:PATH``, ``video_folder:PATH``, a tfds name (or ``NAME:SPLIT``).
        data_dir: tfds data directory.
        download: whether tfds may download a dataset that is not prepared (``--download``).

    Returns:
        A list of :class:`~sskt_tf.downloads.Missing` (empty: nothing lacks).
    """
    kind, location = kinds.resolve(dataset)
    return kind.missing(location, data_dir, download)


def is_video_dataset(dataset, data_dir=None):
    """Whether ``dataset`` (a ``--dataset`` value) holds videos: ``video_folder:PATH`` or a tfds video dataset."""
    kind, location = kinds.resolve(dataset)
    return kind.holds_videos(location, data_dir)


def load_video(
    dataset,
    batch_size,
    clip_length=DEFAULT_CLIP_LENGTH,
    image_size=None,
    short_side=DEFAULT_VIDEO_SHORT_SIDE,
    split=None,
    data_dir=None,
    seed=None,
    augment=True,
    download=True,
    eval_batch_size=None,
    subset=None,
):
    """Loads a video dataset as clip pipelines (the paper's action-recognition data).

    Args:
        dataset: ``video_folder:PATH`` (:mod:`sskt_tf.data.video_folder`) or a
            tfds video dataset (``ucf101/ucf101_1``: split 1 of UCF101; tfds
            calls its validation split ``test``).
        batch_size: global training batch size.
        clip_length: frames a clip (16 in the paper).
        image_size: clip side (default 112, the paper's).
        short_side: frames are resized so their short side has this many
            pixels before cropping (0: as decoded).
        split: official split list of a class-per-subfolder video folder
            (:func:`sskt_tf.data.video_splits.read_split`).
        data_dir: tfds data directory.
        seed: order and clip sampling seed (None: not reproducible).
        augment: random clips (start, multi-scale corner crop, flip); False:
            every training video's centre clip.
        download: let tfds download a dataset that is not prepared yet.
        eval_batch_size: validation batch size (default ``batch_size``).
        subset: a :class:`Subset` to keep.

    Returns:
        A :class:`Data` with ``frames`` and ``video_test`` set; ``mean`` and
        ``std`` are None (a video target uses the original's mean).
    """
    size = image_size or DEFAULT_CLIP_SIZE
    kind, location = kinds.resolve(dataset)
    if kind.load_videos is None:
        raise ConfigError(f"--dataset={dataset} holds images, not videos: train an image target on it.")
    videos = kind.load_videos(location, data_dir, download, split, subset, short_side)
    train, val, info = videos.train, videos.val, videos.info
    decode, load, shuffle_buffer = videos.decode, videos.load, videos.shuffle_buffer
    eval_batch_size = eval_batch_size or batch_size
    return Data(
        train=train_clips(train, batch_size, clip_length, size, decode, seed, augment, shuffle_buffer, load),
        val=validation_clips(val, eval_batch_size, clip_length, size, decode, load),
        num_classes=info["num_classes"],
        image_size=size,
        class_names=list(info["class_names"]),
        train_examples=info["train_examples"],
        subset=info.get("subset"),
        frames=clip_length,
        video_test=video_clip_stacks(val, clip_length, size, decode, load),
    )


__all__ = [
    "DIFFICULT",
    "Data",
    "KNOWN_DATASETS",
    "Splits",
    "Subset",
    "UNLABELED",
    "UnlabeledImages",
    "eval_pipeline",
    "is_video_dataset",
    "load",
    "load_video",
    "load_folder",
    "load_splits",
    "kinds",
    "load_tfds",
    "missing_data",
    "pad_crop_flip",
    "fixed_seed",
    "keyed_train_pipeline",
    "train_pipeline",
    "view_batches",
    "voc_labels",
]
