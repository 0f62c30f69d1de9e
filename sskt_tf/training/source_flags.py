"""The sources a run's flags name: checked, built, or read from a soft-label cache."""

import logging
import os

from sskt_tf import soft_labels
from sskt_tf import sources as sources_lib


def source_weights(config, spec):
    """The weights ``config``'s flags give the source ``spec``: None (random), the family's keyword, or a path."""
    family, _ = sources_lib.parse_spec(spec)
    return family.flag_weights(config)


def check_source_flags(config, inspect=False):
    """Checks ``--sources`` and the weights flags of their families without building or downloading anything.

    Args:
        config: a :class:`TrainConfig`.
        inspect: also the checks that need TensorFlow (see
            :func:`sskt_tf.sources.check_spec`): after the distribution strategy exists.
    """
    for spec in config.sources:
        sources_lib.check_spec(spec, weights=source_weights(config, spec), inspect=inspect)


def open_cache(config):
    """The run's :class:`SoftLabelCache`, or None without ``--soft_label_cache``."""
    if not config.soft_label_cache:
        return None
    return soft_labels.SoftLabelCache(os.path.expanduser(config.soft_label_cache))


def build_sources(config, image_size):
    """The frozen sources named by ``config.sources``.

    Args:
        config: a :class:`TrainConfig`.
        image_size: the target's image side length.

    Returns:
        A list of :class:`sskt_tf.sources.Source`.
    """
    scale = sources_lib.parse_scale(config.source_scale)
    built = [
        sources_lib.from_spec(
            spec,
            image_size,
            scale=scale,
            source_image_size=config.source_image_size or None,
            weights=source_weights(config, spec),
        )
        for spec in config.sources
        if spec.strip()
    ]
    for source in built:
        logging.info(
            "Source %s: %d classes at %s input.",
            source.name,
            source.num_classes,
            source.output_size((image_size, image_size)),
        )
    return built
