"""Fixed augmented "views" of a training set, for training from cached soft labels.

Online SSKT draws a fresh random crop and flip of every image each epoch. A
soft-label cache instead stores the sources' logits for ``K`` fixed views of
each image: view ``v`` of example ``i`` is the paper's pad-4 crop and flip drawn
with a stateless seed made of ``(seed, i, v)``, so it can be recomputed at any
time, in any order, on any machine. Epoch ``e`` trains on view ``e mod K``.
"""

import tensorflow as tf

from sskt_tf.data.augment import pad_crop_flip


def view_seed(seed, index, view):
    """The stateless ``[2]`` seed of view ``view`` of example ``index``.

    Args:
        seed: the cache's seed (int).
        index: the example's position in the training set (int64 tensor).
        view: the view number (int64 tensor).

    Returns:
        An int64 ``[2]`` tensor.
    """
    base = tf.constant([seed, 0x5EED], tf.int64)
    return tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(base, index), view)


def augment_view(image, index, view, seed, augment=True):
    """View ``view`` of the image at position ``index`` (identity without ``augment``)."""
    return pad_crop_flip(image, view_seed(seed, index, view)) if augment else image


def stacked(examples, max_examples):
    """Every element of ``examples`` stacked into one dict of tensors (first dimension: the example)."""
    return examples.batch(max_examples).get_single_element()


def permuted(everything, epoch, seed):
    """The stacked examples ``everything`` in an order fixed by ``(seed, epoch)`` (None: a random one)."""
    positions = tf.range(tf.shape(everything["index"])[0])
    if seed is None:
        order = tf.random.shuffle(positions)
    else:
        order = tf.random.experimental.stateless_shuffle(
            positions, seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
        )
    return tf.nest.map_structure(lambda tensor: tf.gather(tensor, order), everything)


def select(everything, mask):
    """The stacked examples where the boolean ``mask`` is true, in order."""
    return tf.nest.map_structure(lambda tensor: tf.boolean_mask(tensor, mask), everything)


def shuffled_epoch(examples, epoch, seed, max_examples):
    """Every element of ``examples``, stacked into tensors and permuted by ``(seed, epoch)``.

    A full shuffle, fixed by the seed and the epoch alone, so a resumed run
    sees the order an uninterrupted one would. It holds the whole training set
    in memory, as the online pipeline's cache and shuffle buffer do.

    Args:
        examples: a dataset of dicts of tensors (one training example each).
        epoch: the epoch (int or int64 tensor).
        seed: shuffling seed; None draws a random order.
        max_examples: at least the number of elements of ``examples``.

    Returns:
        A dict of tensors whose first dimension is the example.
    """
    return permuted(stacked(examples, max_examples), epoch, seed)


def view_batches(epoch_examples, view, batch_size, view_seed_value, augment=True):
    """One epoch of batches of one view.

    Args:
        epoch_examples: the epoch's examples in training order, a dict of
            stacked tensors (:func:`shuffled_epoch`): ``index``, uint8
            ``image``, ``label`` and optionally ``soft_labels`` (a tuple of
            per-source logits).
        view: which view (int or int64 tensor).
        batch_size: global batch size; the partial last batch is dropped.
        view_seed_value: the seed the views are drawn with (the cache's).
        augment: draw crop-and-flip views (False: every view is the image).

    Returns:
        A dataset of ``(float32 images, labels)`` batches, or
        ``({"images": ..., "soft_labels": (...)}, labels)`` when the examples
        carry soft labels. (No prefetch: callers add it to the whole run.)
    """

    def to_inputs(example):
        view_index = tf.cast(view, tf.int64)
        images = tf.cast(
            augment_view(example["image"], example["index"], view_index, view_seed_value, augment), tf.float32
        )
        if "soft_labels" in example:
            return {"images": images, "soft_labels": tuple(example["soft_labels"])}, example["label"]
        return images, example["label"]

    batches = tf.data.Dataset.from_tensor_slices(epoch_examples).map(
        to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return batches.batch(batch_size, drop_remainder=True)
