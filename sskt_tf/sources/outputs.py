"""The sources' logits on a dataset's training images, and what they are scored on."""

import dataclasses
import time

import numpy as np

from sskt_tf.errors import ConfigError


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


def run_sources(sources, specs, splits, batch_size=256, max_examples=None):
    """Runs ``sources`` once over ``splits``' training images, without augmentation.

    Args:
        sources: built :class:`sskt_tf.sources.Source` layers.
        specs: the ``--sources`` entries they came from.
        splits: the :class:`sskt_tf.data.Splits` whose training images they see.
        batch_size: images per source call.
        max_examples: only the first this many training images; None: all.

    Returns:
        A :class:`SourceOutputs`.

    Raises:
        ConfigError: no training images.
    """
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
        raise ConfigError("The dataset has no training images to run the sources on.")
    return SourceOutputs(
        names=[source.name for source in sources],
        specs=list(specs),
        logits=[np.concatenate(outputs) for outputs in logits],
        labels=np.concatenate(labels),
        seconds=seconds,
        class_names=list(splits.info["class_names"]),
    )
