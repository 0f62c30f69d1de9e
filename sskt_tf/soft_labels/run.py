"""A run's soft-label cache: opened from the flags, checked against the run, its training batches.

Building one is :func:`sskt_tf.soft_labels.write` (``tools/cache_soft_labels.py``);
this module is everything a training run does with one.
"""

import contextlib
import os

import tensorflow as tf

from sskt_tf import data as data_lib
from sskt_tf.errors import ConfigError
from sskt_tf.soft_labels.reader import SoftLabelCache
from sskt_tf.soft_labels.settings import MISMATCH_MARKER


def open_cache(config):
    """The run's :class:`SoftLabelCache`, or None without ``--soft_label_cache``."""
    if not config.soft_label_cache:
        return None
    return SoftLabelCache(os.path.expanduser(config.soft_label_cache))


def check_config(config, method):
    """A cache serves methods that use sources, on image datasets.

    Args:
        config: a :class:`TrainConfig`.
        method: its :class:`sskt_tf.methods.Method`.

    Raises:
        ConfigError: ``--soft_label_cache`` with a method without sources, or with videos.
    """
    if not config.soft_label_cache:
        return
    if not method.uses_sources:
        raise ConfigError(
            f"--soft_label_cache holds sources' soft labels, which --method={config.method} does not use."
        )
    if data_lib.is_video_dataset(config.dataset, config.data_dir or None):
        raise ConfigError(
            "--soft_label_cache holds views of images; video datasets train with their sources online: "
            "drop --soft_label_cache."
        )


def cached_data(config, cache, splits, unlabeled, start_epoch, epoch_length):
    """The run's :class:`sskt_tf.data.Data` whose training batches carry the cache's logits.

    Args:
        config: a :class:`TrainConfig`.
        cache: its :class:`SoftLabelCache`.
        splits: the run's :class:`sskt_tf.data.Splits`, in the cache's order
            (``order_seed=cache.settings["seed"]``).
        unlabeled: the run's :class:`sskt_tf.data.UnlabeledImages`.
        start_epoch: the first epoch to train.
        epoch_length: the run's rule for an epoch's batches, a function of the labelled
            examples one pass covers (:func:`sskt_tf.training.run_data.epoch_steps`);
            asked once the cache is known to match the run.

    Returns:
        A :class:`sskt_tf.data.Data` that carries the cache (``soft_label_cache``).

    Raises:
        ConfigError: the cache was made for other data or sources.
    """
    val = data_lib.eval_pipeline(splits.val, config.batch_size, cache=config.cache)
    cache.check(config, splits.image_size, splits.info["train_examples"], splits.unlabeled_examples)
    steps_per_epoch = epoch_length(cache.labelled_examples)
    seed = data_lib.fixed_seed(config.seed if config.seed >= 0 else None)  # one for every batches_from_epoch
    per_batch = unlabeled.per_batch(config.batch_size)

    def batches_from_epoch(epoch):
        return cache.train_pipeline(
            splits.with_unlabeled(),
            config.batch_size,
            seed=seed,
            start_epoch=epoch,
            epochs=config.epochs,
            steps_per_epoch=steps_per_epoch,
            cache=config.cache,
            unlabeled_examples=splits.unlabeled_examples,
            unlabeled_per_batch=per_batch,
        )

    return splits.epoch_keyed_data(
        batches_from_epoch, val, start_epoch, steps_per_epoch, per_batch, soft_label_cache=cache
    )


@contextlib.contextmanager
def mismatch_as_config_error(config):
    """Turns the cache pipeline's failed data check (training data other than the cache's) into a ConfigError."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if MISMATCH_MARKER not in str(error):
            raise
        raise ConfigError(
            f"The training data differs from the data the soft-label cache in {config.soft_label_cache} was made "
            "from (same dataset name and size, other images or labels or order). Build the cache again from this data."
        ) from None
