"""Clips from videos: temporal sampling and the spatial transforms of the paper's video experiments.

A video is a uint8 tensor ``[frames, height, width, 3]``; a clip is ``length``
frames of it, cropped and resized to ``size`` x ``size``. Training clips (Hara
et al.'s recipe, which the original SSKT code uses): ``length`` consecutive
frames from a random start, a multi-scale corner crop and a horizontal flip,
each drawn once per clip and applied to all its frames. Validation clips: the
centre ``length`` frames, the short side resized to ``size``, a centre crop.
Test: every non-overlapping ``length``-frame clip of a video (video accuracy
averages their softmax). Videos shorter than ``length`` frames are loop-padded
(frames 0, 1, ..., n-1, 0, 1, ...).

All functions are TensorFlow ops, usable inside ``tf.data`` maps, with
stateless randomness: the same seed gives the same clip. A video may also be
its frames still encoded (a string tensor ``[frames]``: JPEG bytes or frame
file paths); the clip functions then pick the clip's frames first and turn only
those into pixels with their ``load`` argument (:func:`sskt_tf.data.video_pipeline.frame_loader`),
so a training clip of a long video costs 16 decoded frames, not all of them.
"""

import math

import tensorflow as tf

# Hara's MultiScaleCornerCrop scales: the crop's side is the short side times one of them.
CROP_SCALES = tuple(2.0 ** (-k / 4) for k in range(5))  # 1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2
CROP_POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")


def loop_indices(start, length, num_frames):
    """Frame indices ``start .. start+length-1``, looping over the video where it is too short.

    Args:
        start: first frame (int32 scalar).
        length: clip length.
        num_frames: frames in the video (>= 1).

    Returns:
        int32 ``[length]``: ``start, start+1, ...`` up to the last frame, then
        the clip's own frames again from its start (Hara's loop padding).
    """
    start = tf.cast(start, tf.int32)
    num_frames = tf.cast(num_frames, tf.int32)
    available = tf.maximum(tf.minimum(num_frames - start, length), 1)
    return start + tf.range(length, dtype=tf.int32) % available


def random_start(num_frames, length, seed):
    """A uniformly random first frame among those a whole clip fits after (0 for a short video).

    Args:
        num_frames: frames in the video.
        length: clip length.
        seed: ``[2]`` int seed.

    Returns:
        int32 scalar in ``[0, max(num_frames - length, 0)]``.
    """
    last = tf.maximum(tf.cast(num_frames, tf.int32) - length, 0)
    return tf.random.stateless_uniform([], seed, minval=0, maxval=last + 1, dtype=tf.int32)


def centre_start(num_frames, length):
    """The first frame of the centre clip (Hara's TemporalCenterCrop), 0 for a short video."""
    return tf.maximum(tf.cast(num_frames, tf.int32) // 2 - length // 2, 0)


def clip_starts(num_frames, length):
    """First frames of a video's non-overlapping clips: 0, length, 2*length, ... (the last may be short).

    Args:
        num_frames: frames in the video.
        length: clip length.

    Returns:
        int32 ``[ceil(num_frames / length)]``.
    """
    return tf.range(0, tf.maximum(tf.cast(num_frames, tf.int32), 1), length, dtype=tf.int32)


def take_frames(video, start, length, load=None):
    """The ``length``-frame clip of ``video`` from ``start``, loop-padded (see :func:`loop_indices`).

    Args:
        video: uint8 ``[T, H, W, 3]``, or encoded frames ``[T]``.
        start: first frame.
        length: clip length.
        load: encoded frames -> uint8 ``[n, H, W, 3]``; None when ``video`` holds pixels.

    Returns:
        uint8 ``[length, H, W, 3]``.
    """
    frames = tf.gather(video, loop_indices(start, length, tf.shape(video)[0]))
    return frames if load is None else load(frames)


def corner_crop_box(height, width, scale, position):
    """``(top, left, side)`` of a square crop of ``scale`` times the short side at a corner or the centre.

    Args:
        height, width: frame size (int32 scalars).
        scale: crop side as a fraction of the short side.
        position: index into ``CROP_POSITIONS``.

    Returns:
        int32 ``top``, ``left`` and ``side``.
    """
    short = tf.minimum(height, width)
    side = tf.cast(tf.cast(short, tf.float32) * scale, tf.int32)
    centre_top, centre_left = (height - side) // 2, (width - side) // 2
    tops = tf.stack([centre_top, 0, 0, height - side, height - side])
    lefts = tf.stack([centre_left, 0, width - side, 0, width - side])
    return tops[position], lefts[position], side


def multiscale_corner_crop(clip, size, seed, scales=CROP_SCALES):
    """A random scale and position (centre or a corner), the same for every frame, resized to ``size``.

    Args:
        clip: ``[T, H, W, C]`` frames.
        size: output side.
        seed: ``[2]`` int seed.
        scales: crop sides as fractions of the short side.

    Returns:
        float32 ``[T, size, size, C]`` in the input's value range.
    """
    scale_seed, position_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    scale = tf.gather(tf.constant(scales, tf.float32), _random_index(len(scales), scale_seed))
    position = _random_index(len(CROP_POSITIONS), position_seed)
    shape = tf.shape(clip)
    top, left, side = corner_crop_box(shape[1], shape[2], scale, position)
    cropped = clip[:, top : top + side, left : left + side]
    return tf.image.resize(tf.cast(cropped, tf.float32), (size, size), method="bilinear", antialias=True)


def centre_crop(clip, size):
    """The short side resized to ``size``, then the centre ``size`` x ``size`` square (validation and test).

    Args:
        clip: ``[T, H, W, C]`` frames.
        size: output side.

    Returns:
        float32 ``[T, size, size, C]``.
    """
    shape = tf.shape(clip)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    factor = size / tf.minimum(height, width)
    new_height = tf.maximum(tf.cast(tf.round(height * factor), tf.int32), size)
    new_width = tf.maximum(tf.cast(tf.round(width * factor), tf.int32), size)
    resized = tf.image.resize(tf.cast(clip, tf.float32), (new_height, new_width), method="bilinear", antialias=True)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return resized[:, top : top + size, left : left + size]


def random_flip(clip, seed):
    """Flips every frame of ``clip`` left-right, or none, with probability 1/2."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(clip, axis=[2]), lambda: clip)


def training_frames(video, length, seed, augment=True, load=None):
    """The frames of one training clip: ``length`` from a random start (the centre ones without ``augment``).

    Args:
        video: uint8 ``[frames, H, W, 3]``, or encoded frames ``[frames]``.
        length: clip length.
        seed: ``[2]`` int seed, one per example and epoch (see :func:`training_clip`).
        augment: False takes the centre clip (:func:`validation_frames`).
        load: see :func:`take_frames`.

    Returns:
        uint8 ``[length, H, W, 3]``.
    """
    if not augment:
        return validation_frames(video, length, load)
    time_seed = tf.random.experimental.stateless_split(seed, num=3)[0]
    return take_frames(video, random_start(tf.shape(video)[0], length, time_seed), length, load)


def training_crop(frames, size, seed, augment=True):
    """A training clip's multi-scale corner crop and flip (the centre crop without ``augment``).

    Args:
        frames: ``[length, H, W, 3]`` from :func:`training_frames` with the same ``seed``.
        size: clip side.
        seed: the clip's ``[2]`` seed.
        augment: False centre-crops instead.

    Returns:
        float32 ``[length, size, size, 3]`` in [0, 255].
    """
    if not augment:
        return centre_crop(frames, size)
    _, crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=3))
    return random_flip(multiscale_corner_crop(frames, size, crop_seed), flip_seed)


def training_clip(video, length, size, seed, augment=True, load=None):
    """One training clip: random start, multi-scale corner crop and flip (or the validation clip).

    Args:
        video: uint8 ``[frames, H, W, 3]``, or encoded frames with ``load``.
        length: clip length.
        size: clip side.
        seed: ``[2]`` int seed, one per example and epoch.
        augment: False gives :func:`validation_clip` (a deterministic clip).
        load: see :func:`take_frames`.

    Returns:
        float32 ``[length, size, size, 3]`` in [0, 255].
    """
    return training_crop(training_frames(video, length, seed, augment, load), size, seed, augment)


def validation_frames(video, length, load=None):
    """The frames of the centre clip of ``video`` (``load``: see :func:`take_frames`)."""
    return take_frames(video, centre_start(tf.shape(video)[0], length), length, load)


def validation_clip(video, length, size, load=None):
    """The centre clip of ``video``, centre-cropped: float32 ``[length, size, size, 3]``.

    ``load``: see :func:`take_frames`.
    """
    return centre_crop(validation_frames(video, length, load), size)


def every_clip_frames(video, length, load=None):
    """The frames of every non-overlapping clip of ``video``, one clip after the other: ``[clips * length, H, W, 3]``.

    Args:
        video: uint8 ``[T, H, W, 3]``, or encoded frames ``[T]``.
        length: clip length.
        load: see :func:`take_frames`.
    """
    starts = clip_starts(tf.shape(video)[0], length)
    indices = tf.map_fn(lambda start: loop_indices(start, length, tf.shape(video)[0]), starts)
    frames = tf.gather(video, tf.reshape(indices, [-1]))
    return frames if load is None else load(frames)


def crop_clips(frames, length, size):
    """:func:`every_clip_frames` centre-cropped and regrouped: float32 ``[clips, length, size, size, 3]``."""
    return tf.reshape(centre_crop(frames, size), [-1, length, size, size, tf.shape(frames)[3]])


def every_clip(video, length, size, load=None):
    """Every non-overlapping clip of ``video``, centre-cropped: float32 ``[clips, length, size, size, 3]``.

    Args:
        video: uint8 ``[T, H, W, 3]``, or encoded frames ``[T]``.
        length: clip length.
        size: clip side.
        load: see :func:`take_frames`.
    """
    return crop_clips(every_clip_frames(video, length, load), length, size)


def _random_index(count, seed):
    return tf.random.stateless_uniform([], seed, minval=0, maxval=count, dtype=tf.int32)


def clips_per_video(num_frames, length):
    """How many test clips :func:`every_clip` makes of a video of ``num_frames`` frames."""
    return max(1, math.ceil(num_frames / length))
