"""``--method=sskt``: the paper's Self-Supervised Knowledge Transfer (:class:`sskt_tf.model.SSKTModel`)."""

from sskt_tf import source_flags
from sskt_tf import targets as targets_lib
from sskt_tf.methods import Method, register
from sskt_tf.model import SSKTModel


def build_target(config, data, num_classes=None):
    """The ``--target`` network for ``data`` (what every method trains).

    Args:
        config: a :class:`TrainConfig`.
        data: the :class:`sskt_tf.data.Data` it trains on.
        num_classes: output classes (default: the dataset's).

    Returns:
        A functional ``keras.Model`` taking raw images, returning logits.
    """
    return targets_lib.get(config.target, num_classes or data.num_classes, image_size=data.image_size,
                           mean=data.mean, std=data.std)


def build_sskt(config, data, sources=None):
    """SSKTModel of ``config``: target, sources (or a cache's placeholders) and heads."""
    if sources is None:
        cache = source_flags.open_cache(config)
        sources = cache.placeholder_sources() if cache else source_flags.build_sources(config, data.image_size)
    return SSKTModel(build_target(config, data), sources, head=config.head, feature_layers=config.feature_layers or None)


def sskt_compile_kwargs(config):
    """SSKTModel.compile's own arguments from the flags."""
    return dict(aux_loss=config.aux_loss, alpha=config.alpha, temperature=config.temperature,
                val_aux_losses=config.val_aux_losses)


def _check(config):
    """The sources (or the soft-label cache standing for them) must be there."""
    if config.soft_label_cache:
        source_flags.open_cache(config)  # the sources are never built: only the cache must be there
    else:
        source_flags.check_source_flags(config)


register(Method(
    name="sskt",
    summary="target + one auxiliary head per frozen source, trained towards the sources' soft labels",
    build=build_sskt,
    compile_kwargs=sskt_compile_kwargs,
    check=_check,
    uses_sources=True,
    multi_label=True,
))
