"""tf.data pipelines from raw ``(uint8 image, label)`` datasets to model batches."""

import tensorflow as tf

from sskt_tf.data.augment import pad_crop_flip


def resize_uint8(image, image_size):
    """Resizes an image (antialiased) to ``image_size`` square and returns uint8."""
    resized = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _to_float(image, label):
    return tf.cast(image, tf.float32), label


def train_pipeline(dataset, batch_size, seed=None, augment=True, cache=True, shuffle_buffer=50_000):
    """Shuffled, augmented, batched training batches of float images in [0, 255].

    Args:
        dataset: ``(uint8 image [H, W, 3], label)`` examples.
        batch_size: global batch size; the last partial batch is dropped so
            every step (and every replica) sees full batches.
        seed: makes shuffling and augmentation reproducible; each epoch still
            gets a different order and different crops.
        augment: apply pad-4 random crop and horizontal flip.
        cache: keep the decoded uint8 images in memory after the first epoch.
        shuffle_buffer: shuffle buffer size.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, labels)`` batches.
    """
    if cache:
        dataset = dataset.cache()
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment:
        # One random seed pair per example, a fresh sequence every epoch, all
        # derived from `seed`: deterministic yet different each epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda example, pair_seed: (pad_crop_flip(example[0], pair_seed), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    dataset = dataset.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return shard_by_data(dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def shard_by_data(dataset):
    """Multi-worker training splits every global batch between workers.

    The default (AUTO) would give each worker its own input files, so workers could
    see different numbers of batches; DATA keeps one global batch order everywhere.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def eval_pipeline(dataset, batch_size, cache=True):
    """Batched evaluation batches of float images in [0, 255], in order.

    Args:
        dataset: ``(uint8 image, label)`` examples.
        batch_size: batch size; the last batch may be smaller.
        cache: keep the decoded images in memory after the first pass.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, labels)`` batches.
    """
    if cache:
        dataset = dataset.cache()
    dataset = dataset.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return shard_by_data(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE))
