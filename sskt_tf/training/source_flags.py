"""The sources a run's flags name: checked, built, or read from a soft-label cache."""

import logging
import os

from sskt_tf import soft_labels
from sskt_tf import sources as sources_lib


def weights_flag(value, keyword):
    """A ``--*_weights`` flag as the source builders take it: None, ``keyword``, or a path."""
    return {"none": None, keyword: keyword}.get(value.lower(), os.path.expanduser(value))


def check_source_flags(config):
    """Checks ``--sources`` and the weights flags without building anything."""
    for spec in config.sources:
        sources_lib.check_spec(spec, places365_weights=weights_flag(config.places365_weights, "places365"))
    for flag, keyword in (("source_weights", "imagenet"), ("places365_weights", "places365")):
        weights = weights_flag(getattr(config, flag), keyword)
        if weights not in (None, keyword):
            sources_lib.require_file(weights, f"--{flag} file")


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
            weights=weights_flag(config.source_weights, "imagenet"),
            places365_weights=weights_flag(config.places365_weights, "places365"),
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
