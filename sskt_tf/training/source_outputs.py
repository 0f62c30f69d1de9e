"""The sources' logits on a run's training images: one pass without augmentation, or a
soft-label cache's first view. What ``tools/inspect_soft_labels.py`` and
``tools/rank_sources.py`` read."""

import dataclasses
import time

import numpy as np

from sskt_tf import soft_labels
from sskt_tf.errors import ConfigError
from sskt_tf.training.checks import validate
from sskt_tf.training.run_data import load_splits
from sskt_tf.training.source_flags import build_sources, check_source_flags, open_cache


@dataclasses.dataclass
class SourceOutputs:
    """Each source's logits on the same training images, and those images' labels.

    Attributes:
        names: the sources' names.
        specs: the ``--sources`` entries they came from (the cached names with a cache).
        logits: one ``[n, classes]`` float64 array per source.
        labels: ``[n]`` target labels.
        seconds: per source, the seconds its forward passes took (0 from a cache).
        class_names: the target's class names, in label order.
        top_k: from a cache that keeps each source's K largest logits only, K (the others
            hold ``TOP_K_FILL``); 0 = every logit.
    """

    names: list
    specs: list
    logits: list
    labels: np.ndarray
    seconds: list
    class_names: list
    top_k: int = 0


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
        A :class:`SourceOutputs`.

    Raises:
        ConfigError: no sources, bad flags, a cache made for other data, ``max_examples`` < 1.
    """
    specs = [spec for spec in config.sources if spec.strip()]
    if not specs:
        raise ConfigError("--sources is empty: there are no sources to run.")
    config = validate(config)
    if max_examples is not None and max_examples < 1:
        raise ConfigError(f"Asked for {max_examples} training images: use at least 1.")
    cache = open_cache(config)
    if cache is not None:
        return _cached_outputs(config, cache, max_examples)
    check_source_flags(config, inspect=True)
    splits = load_splits(config)
    sources = build_sources(config, splits.image_size)
    train = splits.train.take(max_examples) if max_examples else splits.train
    logits, labels, seconds = [[] for _ in sources], [], [0.0] * len(sources)
    for images, batch_labels in train.batch(batch_size).prefetch(2):
        images = images.numpy().astype("float32")
        for i, source in enumerate(sources):
            start = time.perf_counter()
            logits[i].append(np.asarray(source(images, training=False), np.float64))
            seconds[i] += time.perf_counter() - start
        labels.append(batch_labels.numpy())
    if not labels:
        raise ConfigError(f"{config.dataset} has no training images to run the sources on.")
    return SourceOutputs(
        names=[source.name for source in sources],
        specs=specs,
        logits=[np.concatenate(outputs) for outputs in logits],
        labels=np.concatenate(labels),
        seconds=seconds,
        class_names=list(splits.info["class_names"]),
    )


def _cached_outputs(config, cache, max_examples):
    splits = load_splits(config, order_seed=cache.settings["seed"])
    cache.check(config, splits.image_size, splits.info["train_examples"])
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
