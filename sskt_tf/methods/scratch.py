"""``--method=scratch``: the target alone, trained on its labels (``--sources`` is ignored)."""

from sskt_tf.methods import Method, register
from sskt_tf.methods.sskt import build_sskt


def build_scratch(config, data, sources):
    """An SSKTModel without sources: plain supervised training of the target."""
    del sources  # --sources is ignored
    return build_sskt(config, data, sources=[])


register(
    Method(
        name="scratch",
        summary="the target alone, ground-truth loss only",
        build=build_scratch,
        multi_label=True,
    )
)
