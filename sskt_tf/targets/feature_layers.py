"""Which target layers SSKT's auxiliary heads tap when ``--feature_layers`` does not say."""

import re

from sskt_tf.errors import ConfigError


def default_feature_layers(target, head):
    """Names of the target layers an auxiliary head taps by default.

    Args:
        target: functional target model.
        head: ``"transfer"`` (all layers named ``stage<N>``, or ``layer<N>`` as
            torchvision names its stages) or ``"linear"`` (the layer feeding
            the classifier).

    Returns:
        A list of layer names.
    """
    if head == "linear":
        return [classifier_input_layer(target).name]
    stages = sorted(
        (layer.name for layer in target.layers if re.fullmatch(r"(stage|layer)\d+", layer.name)),
        key=lambda name: int(re.sub(r"\D", "", name)),
    )
    if not stages:
        raise ConfigError(
            f"Target {target.name!r} has no layers named stage1, stage2, ... (or layer1, layer2, ...); pass "
            "feature_layers=[...] with the names of its stage outputs for the transfer module."
        )
    return stages


def classifier_input_layer(target):
    """The layer whose output the final (classifier) layer consumes."""
    final_input = target.layers[-1].input
    for layer in target.layers:
        if layer.output is final_input:
            return layer
    raise ConfigError(f"Cannot find the classifier's input layer in {target.name!r}; pass feature_layers=[...].")
