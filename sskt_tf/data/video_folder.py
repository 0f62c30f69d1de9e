"""A user's folder of videos (``video_folder:PATH``), e.g. HMDB51, which tfds does not offer.

Layouts:

* ``PATH/<class>/<video>`` with ``--video_split`` naming the official split
  list (:mod:`sskt_tf.data.video_splits`), as UCF101 and HMDB51 unpack;
* ``PATH/train/<class>/<video>`` and ``PATH/val/<class>/<video>`` (or ``test/``).

A video is a file (``.avi``, ``.mp4``, ...; decoded with PyAV, which bundles
FFmpeg in its wheels) or a directory of its frames as images, in name order
(``image_00001.jpg``, ..., as Hara et al.'s scripts extract them). Frames are
decoded with their short side resized to ``short_side`` pixels (the clips'
crops are taken from those). An unreadable video is skipped with a warning that
names it.
"""

import logging
import os

import numpy as np
import tensorflow as tf

from sskt_tf.data import kinds
from sskt_tf.data import subset as subset_lib
from sskt_tf.data.folder import IMAGE_EXTENSIONS, flatten_files, image_files, split_directories
from sskt_tf.data.video_pipeline import resize_short_side
from sskt_tf.data.video_splits import read_split
from sskt_tf.errors import ConfigError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v")


def _is_video(path):
    if os.path.isdir(path):
        return bool(image_files(path))
    return path.lower().endswith(VIDEO_EXTENSIONS)


def _scaled_size(height, width, short_side):
    if not short_side:
        return height, width
    factor = short_side / min(height, width)
    return max(round(height * factor), 1), max(round(width * factor), 1)


def _decode_frame_files(paths, short_side):
    frames = [tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False) for path in paths]
    return resize_short_side(tf.stack(frames), short_side).numpy()


def _decode_video_file(path, short_side):
    try:
        import av
    except ImportError as error:
        raise ConfigError(
            f"Decoding {path!r} needs PyAV: pip install -e '.[video]' (or pip install 'av>=18.1,<19')."
        ) from error
    frames = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            height, width = _scaled_size(frame.height, frame.width, short_side)
            frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
    if not frames:
        raise ValueError("it holds no video frames")
    return np.stack(frames)


def _as_str(path):
    """A path from a numpy_function (bytes) or from Python (str)."""
    return path.decode() if isinstance(path, bytes) else str(path)


def decode_video(path, short_side=0):
    """All frames of a video file or frame folder.

    Args:
        path: a video file, or a directory of frame images (name order).
        short_side: resize every frame so its short side has this many pixels
            (0: keep the size).

    Returns:
        uint8 ``[frames, height, width, 3]``.

    Raises:
        ConfigError: PyAV is missing. Other exceptions: the video is unreadable.
    """
    path = _as_str(path)
    if os.path.isdir(path):
        return _decode_frame_files(image_files(path), short_side)
    return _decode_video_file(path, short_side)


def decode_or_skip(path, short_side=0):
    """:func:`decode_video`, or an empty video (0 frames) and a warning naming the file when it fails."""
    path = _as_str(path)
    try:
        return decode_video(path, short_side)
    except ConfigError:
        raise
    except Exception as error:  # any decoder failure: the video is skipped, the run goes on
        logging.warning("Skipping unreadable video %s: %s", path, error)
        return np.zeros((0, 1, 1, 3), np.uint8)


def decode_op(path, short_side):
    """:func:`decode_or_skip` as a TensorFlow op: a string path tensor to uint8 ``[T, H, W, 3]``."""
    video = tf.numpy_function(lambda p: decode_or_skip(p, short_side), [path], tf.uint8, stateful=False)
    video.set_shape([None, None, None, 3])
    return video


def list_frames_op(directory):
    """A frame folder's image files in name order, as a string tensor ``[frames]`` (nothing decoded yet)."""
    files = tf.io.matching_files(tf.strings.join([directory, "/*"]))  # sorted by name
    extensions = "|".join(extension.lstrip(".") for extension in IMAGE_EXTENSIONS)
    return tf.boolean_mask(files, tf.strings.regex_full_match(tf.strings.lower(files), f".*\\.({extensions})"))


def frame_files_loader(short_side=0):
    """Frame files -> uint8 pixels, for the clip functions' ``load``: only a clip's frames get decoded.

    A frame that cannot be read gives no frames (the clip is dropped) and a
    warning naming the video's folder and the error.

    Args:
        short_side: resize each frame so its short side has this many pixels (0: keep).

    Returns:
        A function: string ``[n]`` of paths -> uint8 ``[n, H, W, 3]``.
    """

    def decode(paths):
        names = [path.decode() for path in paths]
        try:
            return _decode_frame_files(names, short_side)
        except Exception as error:  # a corrupt or missing frame: the clip is skipped, the run goes on
            logging.warning("Skipping a clip of %s: unreadable frame: %s", os.path.dirname(names[0]), error)
            return np.zeros((0, 1, 1, 3), np.uint8)

    def load(paths):
        frames = tf.numpy_function(decode, [paths], tf.uint8, stateful=False)
        frames.set_shape([None, None, None, 3])
        return frames

    return load


def _list_classes(root):
    """``{class: sorted video paths}`` of a class-per-subdirectory folder."""
    videos = {}
    for name in sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))):
        class_dir = os.path.join(root, name)
        videos[name] = sorted(
            os.path.join(class_dir, entry)
            for entry in os.listdir(class_dir)
            if _is_video(os.path.join(class_dir, entry))
        )
    return videos


def _from_split_file(path, split):
    """``(class names, train {class: paths}, test {class: paths})`` from an official split list."""
    train_entries, test_entries = read_split(split)
    # The classes are those the split names (the folder may hold other things, e.g. the split files).
    class_names = sorted({entry.split("/", 1)[0] for entry in train_entries + test_entries})
    unknown = [name for name in class_names if not os.path.isdir(os.path.join(path, name))]
    if unknown:
        raise ConfigError(
            f"--video_split={split} names classes that {path} has no folder for: {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            + "."
        )
    missing = [entry for entry in train_entries + test_entries if not os.path.exists(os.path.join(path, entry))]
    if missing:
        raise ConfigError(
            f"{len(missing)} videos that --video_split={split} lists are not in {path} (e.g. {', '.join(missing[:3])})."
        )

    def by_class(entries):
        grouped = {name: [] for name in class_names}
        for entry in sorted(entries):
            grouped[entry.split("/", 1)[0]].append(os.path.join(path, entry))
        return grouped

    return class_names, by_class(train_entries), by_class(test_entries)


def _from_split_folders(path):
    train_dir, val_dir = split_directories(
        path,
        f"Video folder {path!r} must contain train/ and val/ (or test/) with one subdirectory of videos per "
        "class, or pass --video_split with the official split list of a class-per-subdirectory folder.",
    )
    train, val = _list_classes(train_dir), _list_classes(val_dir)
    unknown = sorted(set(val) - set(train))
    if unknown:
        raise ConfigError(f"{val_dir} has classes that train/ lacks: {unknown}.")
    return list(train), train, {name: val.get(name, []) for name in train}


def list_video_folder(path, split=None, subset=None):
    """The training and validation videos of a video folder.

    Args:
        path: the folder (see the module docstring for its layouts).
        split: an official split list (see :func:`sskt_tf.data.video_splits.read_split`), or None.
        subset: a :class:`sskt_tf.data.subset.Subset` to keep, or None.

    Returns:
        ``(train, val, info)``: ``train`` and ``val`` are ``(paths, labels)``
        numpy arrays (classes in sorted order, videos sorted within a class);
        ``info`` has ``num_classes``, ``class_names``, ``train_examples``
        and, with an active subset, ``subset`` (its description and the kept
        training videos).
    """
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise ConfigError(f"Video folder {path!r} does not exist (dataset video_folder:{path}).")
    if split:
        class_names, train, val = _from_split_file(path, split)
    else:
        class_names, train, val = _from_split_folders(path)
    empty = [name for name in class_names if not train[name]]
    if not class_names or empty:
        raise ConfigError(f"{path}: every class needs training videos; found classes {class_names}, empty: {empty}.")
    train_paths, train_labels = flatten_files(train, class_names)
    val_paths, val_labels = flatten_files(val, class_names)
    info = {}
    if subset is not None and subset.active:
        (train_paths, train_labels), (val_paths, val_labels), class_names, info["subset"], _ = subset_lib.keep_files(
            subset, (train_paths, train_labels), (val_paths, val_labels), class_names, path
        )
    if len(val_paths) == 0:
        raise ConfigError(f"{path}: no validation videos" + (" of the kept classes." if info else "."))
    info.update(num_classes=len(class_names), class_names=class_names, train_examples=len(train_paths))
    logging.info(
        "video_folder:%s: %d classes, %d training and %d validation videos.",
        path,
        len(class_names),
        len(train_paths),
        len(val_paths),
    )
    return (train_paths, train_labels), (val_paths, val_labels), info


def _load_videos(location, data_dir, download, split, subset, short_side):
    del data_dir, download
    (train_paths, train_labels), (val_paths, val_labels), info = list_video_folder(location, split=split, subset=subset)
    if all(os.path.isdir(path) for path in (*train_paths, *val_paths)):
        # Frame folders: list the files now, decode only a clip's frames later.
        decode, load = list_frames_op, frame_files_loader(short_side)
    else:
        decode, load = (lambda path: decode_op(path, short_side)), None
    return kinds.VideoSplits(
        train=tf.data.Dataset.from_tensor_slices((train_paths, train_labels)),
        val=tf.data.Dataset.from_tensor_slices((val_paths, val_labels)),
        info=info,
        decode=decode,
        load=load,
        shuffle_buffer=max(len(train_paths), 1),
    )


kinds.register(
    kinds.DatasetKind(
        name="video_folder",
        prefix="video_folder:",
        summary="video_folder:PATH (videos or frame folders in class subfolders; see --video_split)",
        load_videos=_load_videos,
        holds_videos=lambda location, data_dir: True,
        missing=kinds.missing_directory("Video folder"),
        user_files=True,
    )
)
