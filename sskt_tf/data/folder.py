"""A user's own image folder: ``PATH/train/<class>/*.jpg`` and ``PATH/val/<class>/*``."""

import logging
import os

import numpy as np
import tensorflow as tf

from sskt_tf.data import kinds
from sskt_tf.data import subset as subset_lib
from sskt_tf.data.pipeline import resize_uint8
from sskt_tf.errors import ConfigError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
VAL_SPLIT_NAMES = ("val", "validation", "test")
_STATS_SAMPLE = 512


# The first bytes of the image formats tf.io.decode_image reads.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")


def looks_like_an_image(path):
    """Whether ``path`` starts like a JPEG, PNG, GIF or BMP file (empty and foreign files do not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith(_IMAGE_SIGNATURES)


def image_files(directory):
    """The files of ``directory`` with an image extension (``IMAGE_EXTENSIONS``), sorted by name."""
    return sorted(
        os.path.join(directory, name) for name in os.listdir(directory) if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def _list_split(split_dir):
    """``{class name: [file paths]}`` for one split directory, without the files that are not images.

    An empty or foreign file (one that does not start like a JPEG, PNG, GIF or
    BMP) is left out with a warning naming it, so the counts are right and a
    split of only such files is an error before training. A file that starts
    right but is truncated is skipped when decoding fails.
    """
    classes = sorted(d for d in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, d)))
    files, unreadable = {}, []
    for name in classes:
        paths = image_files(os.path.join(split_dir, name))
        files[name] = [path for path in paths if looks_like_an_image(path)]
        unreadable += sorted(set(paths) - set(files[name]))
    _warn_unreadable(unreadable, split_dir)
    return files


def _warn_unreadable(unreadable, directory):
    if unreadable:
        logging.warning(
            "Skipping %d file(s) of %s that are empty or not images: %s%s",
            len(unreadable),
            directory,
            ", ".join(unreadable[:10]),
            f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else "",
        )


def load_unlabeled_folder(path, image_size):
    """Every image under ``path`` (in subfolders too, class folders or not), for the auxiliary losses.

    Args:
        path: the directory.
        image_size: side length the images are resized to.

    Returns:
        ``(dataset, count)``: ``(uint8 image, -1)`` examples in sorted path
        order, and how many files look like images (empty and foreign files are
        left out with a warning; truncated ones are skipped when decoding fails).

    Raises:
        ConfigError: no such directory, or no image in it.
    """
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise ConfigError(f"Unlabelled image folder {path!r} does not exist (--unlabeled_dataset=folder:{path}).")
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(path)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    readable = [p for p in paths if looks_like_an_image(p)]
    _warn_unreadable(sorted(set(paths) - set(readable)), path)
    if not readable:
        raise ConfigError(f"Unlabelled image folder {path!r} holds no image ({', '.join(IMAGE_EXTENSIONS)}).")
    return _unlabeled(np.asarray(readable, dtype=str), image_size), len(readable)


def _unlabeled(paths, image_size):
    """``(uint8 image, -1)`` examples of image files, in order."""
    return _split_dataset(paths, np.full(len(paths), -1, np.int64), image_size)


def split_directories(path, problem):
    """``(train dir, validation dir)`` of a folder dataset: ``train/`` and ``val/``, ``validation/`` or ``test/``.

    Args:
        path: the dataset folder.
        problem: the ConfigError message when either is missing.

    Returns:
        The two directory paths.
    """
    train_dir = os.path.join(path, "train")
    val_dir = next((os.path.join(path, d) for d in VAL_SPLIT_NAMES if os.path.isdir(os.path.join(path, d))), None)
    if not os.path.isdir(train_dir) or val_dir is None:
        raise ConfigError(problem)
    return train_dir, val_dir


def _decode(path, label, image_size):
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return resize_uint8(image, image_size), label


def flatten_files(files_by_class, class_names):
    """``(paths, labels)`` numpy arrays of one split, class by class in ``class_names`` order.

    Args:
        files_by_class: ``{class name: [paths]}``; a class it lacks has no files.
        class_names: the dataset's classes; a file's label is its class's index here.

    Returns:
        A str array of paths and an int64 array of labels.
    """
    paths, labels = [], []
    for index, name in enumerate(class_names):
        files = files_by_class.get(name, [])
        paths += files
        labels += [index] * len(files)
    return np.asarray(paths, dtype=str), np.asarray(labels, np.int64)


def _split_dataset(paths, labels, image_size, shuffle_seed=None):
    if shuffle_seed is not None:
        # Mix the classes once, so that a shuffle buffer smaller than the dataset and
        # the statistics sample both see every class.
        order = np.random.RandomState(shuffle_seed).permutation(len(paths))
        paths, labels = paths[order], labels[order]
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(
        lambda path, label: _decode(path, label, image_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    # A corrupt or unreadable file is skipped (with a warning) rather than ending the run.
    return dataset.ignore_errors(log_warning=True)


def _pixel_statistics(dataset):
    """Per-channel mean and std (0-255) over up to 512 (class-mixed) training images."""
    pixels = np.concatenate(
        [image.numpy().reshape(-1, 3).astype(np.float64) for image, _ in dataset.take(_STATS_SAMPLE)]
    )
    return tuple(pixels.mean(axis=0).round(1).tolist()), tuple(np.maximum(pixels.std(axis=0), 1.0).round(1).tolist())


def load_folder(path, image_size, seed=None, subset=None):
    """Loads a class-per-subfolder image directory.

    Args:
        path: directory holding ``train/`` and one of ``val/``, ``validation/``
            or ``test/``, each with one subdirectory per class.
        image_size: side length the images are resized to.
        seed: seed of the one-off mixing of the training file list (None: 0).
        subset: a :class:`sskt_tf.data.subset.Subset` to keep (None: everything).
            Training positions count the image files class by class (classes
            and files in sorted order), after empty and foreign files are left out.

    Returns:
        ``(train, val, info)`` like :func:`sskt_tf.data.tfds_datasets.load_tfds`;
        mean and std are measured on the (kept) training images. With an
        active ``subset``, ``info["subset"]`` describes it
        (:meth:`sskt_tf.data.subset.SubsetPlan.description`, plus the kept
        training files) and ``info["rest_train"]`` is ``(dataset, count)`` of
        the kept classes' other training images, labelled -1.
    """
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise ConfigError(f"Image folder {path!r} does not exist (dataset folder:{path}).")
    train_dir, val_dir = split_directories(
        path,
        f"Image folder {path!r} must contain train/ and one of {'/, '.join(VAL_SPLIT_NAMES)}/ "
        "subdirectories, each with one subdirectory of images per class.",
    )
    train_files, val_files = _list_split(train_dir), _list_split(val_dir)
    class_names = list(train_files)
    empty = [name for name, files in train_files.items() if not files]
    if not class_names or empty:
        raise ConfigError(
            f"{train_dir} needs one subdirectory of images ({', '.join(IMAGE_EXTENSIONS)}) per class; "
            f"found classes {class_names}, empty: {empty}."
        )
    unknown = sorted(set(val_files) - set(train_files))
    if unknown:
        raise ConfigError(
            f"{val_dir} has classes that train/ lacks: {unknown}. Both splits must use the same class names."
        )
    train_paths, train_labels = flatten_files(train_files, class_names)
    val_paths, val_labels = flatten_files(val_files, class_names)
    subset_info = None
    if subset is not None and subset.active:
        (train_paths, train_labels), (val_paths, val_labels), class_names, subset_info, rest_paths = (
            subset_lib.keep_files(subset, (train_paths, train_labels), (val_paths, val_labels), class_names, path)
        )
    if len(val_paths) == 0:
        raise ConfigError(f"{val_dir} holds no readable images" + (" of the kept classes." if subset_info else "."))
    train = _split_dataset(train_paths, train_labels, image_size, shuffle_seed=seed or 0)
    val = _split_dataset(val_paths, val_labels, image_size)
    train_examples = len(train_paths)
    logging.info(
        "folder:%s: %d classes, %d training and %d validation images.",
        path,
        len(class_names),
        train_examples,
        len(val_paths),
    )
    mean, std = _pixel_statistics(train)
    info = dict(
        num_classes=len(class_names),
        image_shape=(image_size, image_size, 3),
        class_names=class_names,
        train_examples=train_examples,
        mean=mean,
        std=std,
    )
    if subset_info:
        info["subset"] = subset_info
        info["rest_train"] = (_unlabeled(rest_paths, image_size), len(rest_paths))
    return train, val, info


# Side length of folder images when --image_size does not say.
DEFAULT_IMAGE_SIZE = 32


def _load_images(location, image_size, data_dir, download, order_seed, subset):
    del data_dir, download
    image_size = image_size or DEFAULT_IMAGE_SIZE
    train, val, info = load_folder(location, image_size, seed=order_seed, subset=subset)
    return train, val, dict(info, multi_label=False), image_size


def _load_unlabeled(location, image_size, data_dir, download):
    del data_dir, download
    return load_unlabeled_folder(location, image_size)


kinds.register(
    kinds.DatasetKind(
        name="folder",
        prefix="folder:",
        summary="folder:PATH (images in class subfolders of train/ and val/ or test/)",
        load_images=_load_images,
        load_unlabeled=_load_unlabeled,
        missing=kinds.missing_directory("Image folder"),
        user_files=True,
    )
)
