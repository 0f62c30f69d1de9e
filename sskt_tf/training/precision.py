"""Keras dtype policies (``--mixed_precision``)."""

import contextlib

import keras

MIXED_PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@contextlib.contextmanager
def dtype_policy(name):
    """Makes ``name`` Keras' global dtype policy inside the block (layers keep it after)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
