"""The paper's augmentation: zero-pad by 4, random crop back, random horizontal flip.

Implemented with stateless random ops so a run with a fixed seed sees exactly
the same augmented images every time, whatever the number of parallel calls.
"""

import tensorflow as tf


def pad_crop_flip(image, seed, padding=4):
    """Randomly crops a zero-padded image back to its size and maybe flips it.

    Args:
        image: ``[H, W, C]`` image tensor (any dtype).
        seed: ``[2]`` int tensor; the same seed gives the same crop and flip.
        padding: pixels of zero padding on each side before cropping.

    Returns:
        The augmented ``[H, W, C]`` image, same dtype.
    """
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    cropped = tf.image.stateless_random_crop(padded, shape, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(cropped, seed=flip_seed)
