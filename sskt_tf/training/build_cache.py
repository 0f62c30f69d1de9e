"""Building the soft-label cache of a run's configuration (``tools/cache_soft_labels.py``)."""

import os

from sskt_tf import soft_labels
from sskt_tf.errors import ConfigError
from sskt_tf.sources.flags import build_sources, check_source_flags
from sskt_tf.training.checks import validate
from sskt_tf.training.precision import dtype_policy
from sskt_tf.training.run_data import load_splits


def build_soft_label_cache(
    config, views, top_k=0, dtype="float16", batch_size=256, examples_per_shard=10_000, overwrite=False, control=""
):
    """Writes the soft-label cache of ``config`` into ``config.soft_label_cache`` (``tools/cache_soft_labels.py``).

    Args:
        config: the :class:`TrainConfig` of the runs the cache will serve.
        views: number of augmented views K per training image.
        top_k: keep each source's ``top_k`` largest logits only (0: all).
        dtype: ``float16`` or ``float32`` storage.
        batch_size: images per source call.
        examples_per_shard: records per TFRecord file.
        overwrite: replace an existing cache.
        control: a study's control stored instead of the sources' logits
            (``"shuffle"`` or ``"spread:S"``; see
            :func:`sskt_tf.soft_labels.writer.control_logits`).

    Returns:
        The cache's manifest dict.
    """
    if not config.soft_label_cache:
        raise ConfigError("--soft_label_cache=DIR names the directory to write the cache to.")
    config = validate(config, building_cache=True)
    check_source_flags(config, inspect=True)  # validation leaves them to the cache a run names; here they run
    if not [spec for spec in config.sources if spec.strip()]:
        raise ConfigError("--sources is empty: there is nothing to cache.")
    splits = load_splits(config)
    with dtype_policy(config.mixed_precision):
        sources = build_sources(config, splits.image_size)
    return soft_labels.write(
        config,
        splits,
        sources,
        os.path.expanduser(config.soft_label_cache),
        views,
        top_k=top_k,
        dtype=dtype,
        batch_size=batch_size,
        examples_per_shard=examples_per_shard,
        overwrite=overwrite,
        verbose=config.verbose,
        control=control,
    )
