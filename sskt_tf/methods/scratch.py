"""``--method=scratch``: the target alone, trained on its labels (``--sources`` is ignored)."""

from sskt_tf import targets as targets_lib
from sskt_tf.methods import Method, register
from sskt_tf.methods.sskt import SSKTModel


def build_scratch(config, data):
    """An SSKTModel without sources: plain supervised training of the target."""
    return SSKTModel(targets_lib.build_for(config.target, data))


register(
    Method(
        name="scratch",
        summary="the target alone, ground-truth loss only",
        build=build_scratch,
        multi_label=True,
    )
)
