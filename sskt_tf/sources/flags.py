"""The sources a run's flags name (``--sources`` and each family's weights flag): checked and built."""

import logging

import keras

from sskt_tf.sources import layer
from sskt_tf.sources import spec as spec_lib


def source_weights(config, spec):
    """The weights ``config``'s flags give the source ``spec``: None (random), the family's keyword, or a path."""
    family, _ = spec_lib.parse_spec(spec)
    return family.flag_weights(config)


def has_random_weights(config, spec):
    """Whether ``config``'s flags give the source ``spec`` random weights (its family's weights flag is ``none``)."""
    family, _ = spec_lib.parse_spec(spec)
    return bool(family.weights_flag) and family.flag_weights(config) is None


def check_source_flags(config, inspect=False):
    """Checks ``--sources`` and the weights flags of their families without building or downloading anything.

    Args:
        config: a :class:`TrainConfig`.
        inspect: also the checks that need TensorFlow (see
            :func:`sskt_tf.sources.check_spec`): after the distribution strategy exists.
    """
    for spec in config.sources:
        spec_lib.check_spec(spec, weights=source_weights(config, spec), inspect=inspect)


def build_sources(config, image_size):
    """The frozen sources named by ``config.sources``.

    Random weights (a family's weights flag ``none``, a study's control) are
    drawn from ``--seed`` when it is set: the same flags build the same network,
    in a rerun or a rebuilt soft-label cache.

    Args:
        config: a :class:`TrainConfig`.
        image_size: the target's image side length.

    Returns:
        A list of :class:`sskt_tf.sources.Source`.
    """
    scale = layer.parse_scale(config.source_scale)
    specs = [spec for spec in config.sources if spec.strip()]
    if config.seed >= 0 and any(has_random_weights(config, spec) for spec in specs):
        # Keras draws unseeded initial weights from its global generator: without this, every
        # build (each rebuild of a cache) drew another random network under the same settings.
        keras.utils.set_random_seed(config.seed)
    built = [
        spec_lib.from_spec(
            spec,
            image_size,
            scale=scale,
            source_image_size=config.source_image_size or None,
            weights=source_weights(config, spec),
        )
        for spec in specs
    ]
    for source in built:
        logging.info(
            "Source %s: %d classes at %s input.",
            source.name,
            source.num_classes,
            source.output_size((image_size, image_size)),
        )
    return built


def for_run(config, data):
    """The sources of a run on ``data``: the soft-label cache's placeholders when its training
    batches carry cached logits (:attr:`sskt_tf.data.Data.soft_label_cache`), else the
    frozen sources ``--sources`` names, built for ``data``'s image size.

    Args:
        config: a :class:`TrainConfig`.
        data: the run's :class:`sskt_tf.data.Data`.

    Returns:
        A list of :class:`sskt_tf.sources.Source` (or cache placeholders).
    """
    if data.soft_label_cache is not None:
        return data.soft_label_cache.placeholder_sources()
    return build_sources(config, data.image_size)
