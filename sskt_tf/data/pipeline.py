"""tf.data pipelines from raw ``(uint8 image, label)`` datasets to model batches."""

import math
import random

import tensorflow as tf

from sskt_tf.data import views as views_lib
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


def fixed_seed(seed):
    """``seed`` as an int, or a random one drawn now when it is None (an unseeded run).

    Draw it once and pass it to every pipeline of a run that must agree with the others.
    """
    return random.SystemRandom().randrange(2**31) if seed is None else int(seed)


def keyed_train_pipeline(
    dataset, batch_size, steps_per_epoch, max_examples, seed=None, augment=True, start_epoch=0, epochs=1
):
    """Training batches of epochs ``start_epoch .. epochs - 1``, each a function of ``(seed, epoch)`` alone.

    Epoch ``e`` permutes the whole training set with a stateless shuffle keyed
    by ``(seed, e)`` and crops and flips its ``i``-th example with a stateless
    seed made of ``(seed, e, i)``; when an epoch needs more examples than one
    pass holds (``steps_per_epoch`` larger than a pass, or images that failed
    to decode), it continues with another permutation of its own. Nothing
    depends on how many iterators were made before, so a run resumed at epoch
    ``e`` in a new process, and every worker of a cluster, sees exactly the
    batches one uninterrupted process sees. The decoded images are cached in
    memory (each permutation stacks them once more, as the soft-label cache's
    pipeline does). The dataset covers every remaining epoch: pass
    ``steps_per_epoch`` to ``fit`` (Keras then keeps one iterator).

    Args:
        dataset: ``(uint8 image [H, W, 3], label)`` examples in a fixed order.
        batch_size: global batch size (partial batches are never formed).
        steps_per_epoch: batches per epoch.
        max_examples: at least the number of examples (the dataset's size).
        seed: the run's seed (None: a random one, not reproducible).
        augment: apply pad-4 random crop and horizontal flip.
        start_epoch: the first epoch (a resumed run's).
        epochs: the run's number of epochs.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, labels)`` batches,
        ``steps_per_epoch`` of them per epoch.
    """
    seed = fixed_seed(seed)
    examples = (
        dataset.enumerate()
        .map(lambda index, example: {"index": index, "image": example[0], "label": example[1]})
        .cache()
    )
    passes = math.ceil(steps_per_epoch * batch_size / max(1, max_examples)) + 1
    augment_base = tf.constant([seed, 0xA06], tf.int64)

    def epoch_batches(epoch):
        def one_pass(pass_index):
            shuffled = views_lib.shuffled_epoch(examples, epoch * passes + pass_index, seed, max_examples)
            return tf.data.Dataset.from_tensor_slices(shuffled)

        def to_inputs(position, example):
            image = example["image"]
            if augment:
                fold_in = tf.random.experimental.stateless_fold_in
                image = pad_crop_flip(image, fold_in(fold_in(augment_base, epoch), position))
            return tf.cast(image, tf.float32), example["label"]

        stream = tf.data.Dataset.range(passes).flat_map(one_pass).enumerate()
        batches = stream.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return batches.batch(batch_size, drop_remainder=True).take(steps_per_epoch)

    epochs_dataset = tf.data.Dataset.range(start_epoch, epochs)
    return shard_by_data(epochs_dataset.flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE))


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
