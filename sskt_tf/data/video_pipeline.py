"""tf.data pipelines from videos to clip batches: training, validation, and every clip of a video for testing.

Each pipeline starts from ``(reference, label)`` examples and a ``decode``
function that turns a reference into uint8 frames ``[T, H, W, 3]``: a path
decoded by :func:`sskt_tf.data.video_folder.decode_op`, or the frames
themselves (tfds). Videos that decode to no frames (unreadable files, skipped
with a warning) are dropped. Clips are float32 in [0, 255]; the target
normalises them itself.
"""

import tensorflow as tf

from sskt_tf.data import clips as clips_lib
from sskt_tf.data.pipeline import shard_by_data


def resize_short_side(video, short_side):
    """Frames resized (antialiased) so their short side has ``short_side`` pixels; uint8 kept.

    Args:
        video: uint8 ``[T, H, W, 3]``.
        short_side: target short side; 0 keeps the frames as they are.

    Returns:
        uint8 ``[T, H', W', 3]``.
    """
    if not short_side:
        return video
    shape = tf.cast(tf.shape(video)[1:3], tf.float32)
    size = tf.cast(tf.round(shape * (short_side / tf.reduce_min(shape))), tf.int32)
    resized = tf.image.resize(video, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def frame_loader(short_side):
    """Encoded frames (JPEG or PNG bytes, as tfds stores videos) -> uint8 pixels, short side resized.

    Args:
        short_side: see :func:`resize_short_side`.

    Returns:
        A function: string ``[n]`` -> uint8 ``[n, H, W, 3]``, for the clip
        functions' ``load`` argument (only a clip's frames get decoded).
    """

    def load(encoded):
        frames = tf.map_fn(
            lambda data: tf.io.decode_image(data, channels=3, expand_animations=False),
            encoded,
            fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        )
        return resize_short_side(frames, short_side)

    return load


def _has_frames(frames, *_):
    return tf.shape(frames)[0] > 0


_PARALLEL = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _videos(examples, decode):
    """``(video, ...)`` with ``decode`` applied, without the videos that decode to no frames."""
    return examples.map(lambda reference, *rest: (decode(reference), *rest), **_PARALLEL).filter(_has_frames)


def train_clips(
    examples, batch_size, length, size, decode=tf.identity, seed=None, augment=True, shuffle_buffer=4096, load=None
):
    """Shuffled batches of training clips: random start, multi-scale corner crop, flip (see :mod:`.clips`).

    Args:
        examples: ``(reference, label)`` training examples in a fixed order.
        batch_size: global batch size; the last partial batch is dropped.
        length: frames a clip.
        size: clip side.
        decode: reference -> uint8 frames (or encoded frames, with ``load``).
        seed: makes the order and the clips reproducible (each epoch differs).
        augment: False takes every video's centre clip instead.
        shuffle_buffer: examples in the shuffle buffer (references are shuffled
            before decoding, so paths cost little; decoded videos cost much).
        load: turns a clip's encoded frames into pixels when ``decode`` leaves
            them encoded (:func:`frame_loader`); None when it decodes them.
            A clip whose frames fail to load (no frames) is dropped.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 clips [batch, length, size, size, 3], labels)``.
    """
    examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    # One random seed pair per example, a fresh sequence every epoch, all derived from `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    with_seeds = tf.data.Dataset.zip(examples, seeds).map(lambda example, pair: (example[0], pair, example[1]))
    frames = _videos(with_seeds, decode).map(
        lambda video, pair, label: (clips_lib.training_frames(video, length, pair, augment, load), pair, label),
        **_PARALLEL,
    )
    clip_examples = frames.filter(_has_frames).map(
        lambda clip, pair, label: (clips_lib.training_crop(clip, size, pair, augment), label), **_PARALLEL
    )
    return shard_by_data(clip_examples.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def validation_clips(examples, batch_size, length, size, decode=tf.identity, load=None):
    """Batches of each video's centre clip, centre-cropped, in order (clip accuracy).

    Args:
        examples: ``(reference, label)`` validation examples.
        batch_size: batch size; the last batch may be smaller.
        length: frames a clip.
        size: clip side.
        decode: reference -> uint8 frames (or encoded frames, with ``load``).
        load: see :func:`train_clips`.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 clips, labels)`` batches.
    """
    frames = _videos(examples, decode).map(
        lambda video, label: (clips_lib.validation_frames(video, length, load), label), **_PARALLEL
    )
    centre = frames.filter(_has_frames).map(lambda clip, label: (clips_lib.centre_crop(clip, size), label), **_PARALLEL)
    return shard_by_data(centre.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def video_clip_stacks(examples, length, size, decode=tf.identity, load=None):
    """Every non-overlapping clip of each video, one video an element (video accuracy).

    Args:
        examples: ``(reference, label)`` test examples.
        length: frames a clip.
        size: clip side.
        decode: reference -> uint8 frames (or encoded frames, with ``load``).
        load: see :func:`train_clips`.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 clips [n_clips, length, size, size, 3], label)``, one a video.
    """
    frames = _videos(examples, decode).map(
        lambda video, label: (clips_lib.every_clip_frames(video, length, load), label), **_PARALLEL
    )
    return frames.filter(_has_frames).map(
        lambda clip_frames, label: (clips_lib.crop_clips(clip_frames, length, size), label), **_PARALLEL
    )
