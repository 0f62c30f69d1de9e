"""A run's sources from its configuration, run over its training images: the outputs
``tools/inspect_soft_labels.py`` reads and the ranking ``tools/rank_sources.py`` prints."""

import numpy as np

from sskt_tf import soft_labels
from sskt_tf.errors import ConfigError
from sskt_tf.sources import flags as source_flags
from sskt_tf.sources import ranking
from sskt_tf.sources.outputs import SourceOutputs, run_sources
from sskt_tf.training.checks import validate
from sskt_tf.training.run_data import load_splits


def source_outputs(config, batch_size=256, max_examples=None):
    """Runs ``config``'s sources once over its training images (or reads its soft-label cache).

    Without ``--soft_label_cache``, every source sees the training images as training
    resizes and preprocesses them, without augmentation. With it, the cache's first view
    is read (the plain images if the cache was built with ``--noaugment``; top-k caches
    hold only their top k logits exactly).

    Args:
        config: a :class:`TrainConfig` (dataset, subset flags, ``--sources`` and their
            weights flags, or ``--soft_label_cache``).
        batch_size: images per source call.
        max_examples: use only the first this many training images of the run's seeded
            order (a random draw with ``--seed >= 0``); None: all.

    Returns:
        A :class:`sskt_tf.sources.outputs.SourceOutputs`.

    Raises:
        ConfigError: no sources, bad flags, a cache made for other data, ``max_examples`` < 1.
    """
    specs = [spec for spec in config.sources if spec.strip()]
    if not specs:
        raise ConfigError("--sources is empty: there are no sources to run.")
    config = validate(config)
    if max_examples is not None and max_examples < 1:
        raise ConfigError(f"Asked for {max_examples} training images: use at least 1.")
    cache = soft_labels.open_cache(config)
    if cache is not None:
        return _cached_outputs(config, cache, max_examples)
    source_flags.check_source_flags(config, inspect=True)
    splits = load_splits(config)
    sources = source_flags.build_sources(config, splits.image_size)
    return run_sources(sources, specs, splits, batch_size, max_examples)


def _cached_outputs(config, cache, max_examples):
    splits = load_splits(config, order_seed=cache.settings["seed"])
    cache.check(config, splits.image_size, splits.info["train_examples"], splits.unlabeled_examples)
    examples = cache.view_examples(soft_labels.indexed_examples(splits.train, cache=False), 0)
    if max_examples:
        examples = examples.take(max_examples)
    names = [name for name, _ in cache.source_classes]
    logits, labels = [[] for _ in names], []
    for batch in examples.batch(1024):
        for outputs, values in zip(logits, batch["soft_labels"]):
            outputs.append(np.asarray(values, np.float64))
        labels.append(batch["label"].numpy())
    return SourceOutputs(
        names=names,
        specs=names,
        logits=[np.concatenate(outputs) for outputs in logits],
        labels=np.concatenate(labels),
        seconds=[0.0] * len(names),
        class_names=list(splits.info["class_names"]),
        top_k=int(cache.settings["top_k"]),
    )


def rank(config, rank_examples=0, batch_size=256, rank_by="leep", pairs=True):
    """Scores ``config``'s candidate sources on its training images; returns the table, best first.

    Args:
        config: a :class:`TrainConfig` naming the candidates in ``sources`` (or a cache).
        rank_examples: use the first N training images; 0 = all.
        batch_size: images per source call.
        rank_by: the score to sort by (``leep``, ``nce`` or ``logme``).
        pairs: also score every pair of candidates.

    Returns:
        What :func:`sskt_tf.sources.ranking.rank_outputs` returns.

    Raises:
        ConfigError: no candidate, bad flags, data or sources that fail to load, LogME
            asked of a top-k cache.
    """
    ranking.check_rank_by(rank_by)
    outputs = source_outputs(config, batch_size, max_examples=rank_examples or None)
    return ranking.rank_outputs(outputs, rank_by, pairs)
