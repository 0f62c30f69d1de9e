"""tf.data pipelines from raw ``(uint8 image, label)`` datasets to model batches."""

import math
import random

import numpy as np
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
    dataset,
    batch_size,
    steps_per_epoch,
    max_examples,
    seed=None,
    augment=True,
    start_epoch=0,
    epochs=1,
    unlabeled=None,
    unlabeled_examples=0,
    unlabeled_per_batch=0,
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

    Unlabelled examples, if any, come from a second stream keyed the same way
    (with seeds of their own): every batch gets ``unlabeled_per_batch`` of them,
    interleaved with its ``batch_size`` labelled ones (:func:`mix_batches`).

    Args:
        dataset: ``(uint8 image [H, W, 3], label)`` examples in a fixed order.
        batch_size: global batch size of labelled examples (partial batches are never formed).
        steps_per_epoch: batches per epoch.
        max_examples: at least the number of examples (the dataset's size).
        seed: the run's seed (None: a random one, not reproducible).
        augment: apply pad-4 random crop and horizontal flip.
        start_epoch: the first epoch (a resumed run's).
        epochs: the run's number of epochs.
        unlabeled: ``(uint8 image, -1)`` examples in a fixed order, or None.
        unlabeled_examples: at least their number.
        unlabeled_per_batch: unlabelled examples added to every batch.

    Returns:
        A ``tf.data.Dataset`` of ``(float32 images, labels)`` batches,
        ``steps_per_epoch`` of them per epoch.
    """
    seed = fixed_seed(seed)
    labelled = _keyed_epochs(dataset, max_examples, batch_size, steps_per_epoch, seed, seed, 0xA06, augment)
    epoch_batches = labelled
    if unlabeled_per_batch:
        unlabelled = _keyed_epochs(
            unlabeled,
            unlabeled_examples,
            unlabeled_per_batch,
            steps_per_epoch,
            seed + UNLABELED_SEED_OFFSET,
            seed,
            0xA07,
            augment,
        )

        def epoch_batches(epoch):
            return mix_batches(labelled(epoch), unlabelled(epoch), batch_size, unlabeled_per_batch)

    epochs_dataset = tf.data.Dataset.range(start_epoch, epochs)
    return shard_by_data(epochs_dataset.flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE))


# Added to the run's seed for the unlabelled stream's shuffles: its own order, as reproducible.
UNLABELED_SEED_OFFSET = 0x51A8


def _keyed_epochs(dataset, max_examples, batch_size, steps_per_epoch, shuffle_seed, seed, salt, augment):
    """A function of an epoch returning that epoch's batches (see :func:`keyed_train_pipeline`)."""
    examples = (
        dataset.enumerate()
        .map(lambda index, example: {"index": index, "image": example[0], "label": example[1]})
        .cache()
    )
    passes = math.ceil(steps_per_epoch * batch_size / max(1, max_examples)) + 1
    augment_base = tf.constant([seed, salt], tf.int64)

    def epoch_batches(epoch):
        def one_pass(pass_index):
            shuffled = views_lib.shuffled_epoch(examples, epoch * passes + pass_index, shuffle_seed, max_examples)
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

    return epoch_batches


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


def interleaved_order(labelled, unlabelled):
    """The positions that spread ``unlabelled`` examples evenly among ``labelled`` ones.

    Args:
        labelled: labelled examples in the batch (first in the concatenation).
        unlabelled: unlabelled examples (after them).

    Returns:
        An int array: ``concat([labelled, unlabelled])[order]`` alternates them
        in proportion (``l u l u`` at ratio 1, ``l u u l u u`` at 2).
    """
    keys = np.concatenate([np.arange(labelled) / labelled, np.arange(unlabelled) / unlabelled])
    return np.argsort(keys, kind="stable").astype(np.int32)


def mix_batches(labelled_batches, unlabelled_batches, labelled, unlabelled):
    """Each labelled batch with the next unlabelled one, interleaved into one batch.

    Args:
        labelled_batches: batches of ``(inputs, labels)`` with ``labelled`` examples.
        unlabelled_batches: batches of the same structure with ``unlabelled``
            examples (labels :data:`UNLABELED`); at least as many batches.
        labelled: examples in a labelled batch.
        unlabelled: examples in an unlabelled batch.

    Returns:
        Batches of ``labelled + unlabelled`` examples (as many as ``labelled_batches``).
    """
    order = tf.constant(interleaved_order(labelled, unlabelled))

    def mix(first, second):
        return tf.nest.map_structure(lambda a, b: tf.gather(tf.concat([a, b], 0), order), first, second)

    return tf.data.Dataset.zip(labelled_batches, unlabelled_batches).map(mix, num_parallel_calls=tf.data.AUTOTUNE)
