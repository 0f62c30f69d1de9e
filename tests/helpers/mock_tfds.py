"""tfds mocked for runs that go through the whole training path."""

import contextlib
from unittest import mock

import tensorflow_datasets as tfds


@contextlib.contextmanager
def mocked_tfds(num_examples):
    """``tfds.testing.mock_data`` (random examples, no download), every dataset counted as prepared.

    mock_data serves any split without a prepared copy; the run's up-front check of what is
    missing asks ``is_prepared()``, which must then say so too.

    Args:
        num_examples: examples in each split.
    """
    with (
        tfds.testing.mock_data(num_examples=num_examples),
        mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True),
    ):
        yield
