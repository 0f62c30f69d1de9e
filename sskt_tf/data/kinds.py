"""Kinds of ``--dataset`` value (``folder:PATH``, ``video_folder:PATH``, tfds names), as one registry.

A kind is one way of naming data: a prefix (``folder:``), or none for the kind that takes
every other value (tfds names). Each loader module registers its kind with a
:class:`DatasetKind` that says how to load it (images, clips or unlabelled images), what
it lacks on this machine, whether it holds videos and what a flag must not be. Loading, the
up-front check of what a run lacks, the flags' validation and the unlabelled images find kinds
only through :func:`resolve`, so a new kind is one module plus its registration.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

from sskt_tf import downloads
from sskt_tf.errors import ConfigError
from sskt_tf.registry import Registry


def _no_check(location):
    del location


def _holds_no_videos(location, data_dir):
    del location, data_dir
    return False


def _nothing_missing(location, data_dir, download):
    del location, data_dir, download
    return []


@dataclasses.dataclass(frozen=True)
class VideoSplits:
    """What a video kind gives :func:`sskt_tf.data.load_video`: videos and how to decode them.

    Attributes:
        train: ``(video, label)`` training examples in a fixed order; ``video`` is whatever
            ``decode`` takes (a path, encoded frames).
        val: the same for validation.
        info: ``num_classes``, ``class_names``, ``train_examples`` (and ``subset``).
        decode: ``decode(video) -> frames or frame list`` run in the pipeline.
        load: a function that decodes a clip's frames only, or None (``decode`` decodes all).
        shuffle_buffer: training examples the shuffle buffer holds.
    """

    train: Any
    val: Any
    info: dict
    decode: Callable
    load: Optional[Callable]
    shuffle_buffer: int


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    """A kind of ``--dataset`` (and ``--unlabeled_dataset``) value.

    Attributes:
        name: the kind's own name (``"folder"``), for messages.
        summary: what values of the kind name, one line (``"folder:PATH, images in class
            subfolders of train/ and val/"``).
        prefix: values ``<prefix><location>`` belong to the kind (``"folder:"``); None for
            the one kind that takes every value no prefix claims (tfds names).
        load_images: ``load_images(location, image_size, data_dir, download, order_seed,
            subset) -> (train, val, info, image_size)``: unbatched ``(uint8 image, label)``
            examples in a fixed order, resized to ``image_size`` (None: the kind's default),
            and ``info`` as :func:`sskt_tf.data.load_tfds` gives it; None for a kind without
            images.
        load_videos: ``load_videos(location, data_dir, download, split, subset, short_side)
            -> VideoSplits``; None for a kind without videos.
        load_unlabeled: ``load_unlabeled(location, image_size, data_dir, download) ->
            (dataset, count)`` of ``(uint8 image, -1)`` examples (``--unlabeled_dataset``);
            None when the kind cannot serve as unlabelled images.
        holds_videos: ``holds_videos(location, data_dir) -> bool``, without loading.
        missing: ``missing(location, data_dir, download)``: what loading lacks on this
            machine, as :class:`~sskt_tf.downloads.Missing` items, offline and in milliseconds.
        check: ``check(location)`` raises a ``ConfigError`` for a ``--dataset`` value that can
            never work (the flags' validation, before anything is read).
        check_unlabeled: the same for an ``--unlabeled_dataset`` value.
        user_files: the kind names the user's own files: a run on them must name its
            ``--sources`` (the default source would download weights).
    """

    name: str
    summary: str
    prefix: Optional[str] = None
    load_images: Optional[Callable] = None
    load_videos: Optional[Callable] = None
    load_unlabeled: Optional[Callable] = None
    holds_videos: Callable = _holds_no_videos
    missing: Callable = _nothing_missing
    check: Callable = _no_check
    check_unlabeled: Callable = _no_check
    user_files: bool = False


def _same_prefix(kind, other):
    if kind.prefix == other.prefix:
        return f"Dataset kind {kind.name!r} takes the prefix of {other.name!r}."
    return None


_REGISTRY = Registry("Dataset kind", conflict=_same_prefix, order=lambda kind: kind.prefix is None)


def register(kind):
    """Adds ``kind`` to the registry.

    Args:
        kind: a :class:`DatasetKind`.

    Returns:
        ``kind``.

    Raises:
        ValueError: the name or the prefix is taken, or a second kind without a prefix.
    """
    return _REGISTRY.register(kind)


def unregister(name):
    """Removes a kind (a test's own, for instance); unknown names are ignored."""
    _REGISTRY.unregister(name)


def kinds():
    """The registered kinds, prefixed ones first."""
    return _REGISTRY.entries()


def resolve(dataset):
    """The kind a ``--dataset`` value belongs to, and the location it names.

    Args:
        dataset: ``<prefix><location>`` or a value no prefix claims (a tfds name).

    Returns:
        ``(DatasetKind, location)``: ``folder:~/data`` gives the folder kind and ``~/data``.

    Raises:
        ConfigError: no kind takes the value.
    """
    for kind in kinds():
        if kind.prefix is None:
            return kind, dataset
        if dataset.startswith(kind.prefix):
            return kind, dataset[len(kind.prefix) :]
    raise ConfigError(f"Unknown --dataset={dataset}: use {'; '.join(kind.summary for kind in kinds())}.")


def missing_directory(what):
    """A ``missing`` function for a kind whose location is a directory, which must exist.

    Args:
        what: what the directory holds, for the message (``"Image folder"``).

    Returns:
        ``missing(location, data_dir, download) -> [Missing]`` (empty when the directory exists).
    """

    def missing(location, data_dir, download):
        del data_dir, download
        path = os.path.expanduser(location)
        return [] if os.path.isdir(path) else [downloads.Missing(what=f"{what} {path!r} does not exist.")]

    return missing
