"""Folding a frozen network's BatchNorm into its convolutions keeps its outputs."""

import keras
import numpy as np
import pytest

from sskt_tf import sources
from sskt_tf.sources.fold_batch_norm import FoldedBatchNorm, fold_batch_norm
from sskt_tf.targets import torchvision_resnet


def _randomize_batch_norm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.2, n), rng.uniform(0.5, 2, n)]
            )
    return model


def _count(model, layer_type):
    return sum(isinstance(layer, layer_type) for layer in model.layers)


def test_a_resnet_folds_completely_and_keeps_its_logits():
    model = _randomize_batch_norm(torchvision_resnet.build("resnet18", 20))
    folded = fold_batch_norm(model)
    assert _count(folded, keras.layers.BatchNormalization) == 0
    assert _count(folded, FoldedBatchNorm) == _count(model, keras.layers.BatchNormalization)
    images = np.random.default_rng(1).normal(size=(3, 40, 40, 3)).astype("float32")
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(folded(images, training=False).numpy(), expected, atol=2e-5 * np.abs(expected).max())


def test_only_batch_norms_that_follow_a_private_linear_convolution_fold():
    inputs = keras.Input((8, 8, 3))
    pre_activation = keras.layers.BatchNormalization(name="pre")(inputs)  # no convolution before it
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")(pre_activation)
    after_shared = keras.layers.BatchNormalization(name="after_shared")(shared)  # the conv output is read twice
    activated = keras.layers.Conv2D(4, 1, activation="relu", name="activated")(after_shared)
    after_activated = keras.layers.BatchNormalization(name="after_activated")(activated)  # relu in between
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="depthwise")(after_activated)
    after_depthwise = keras.layers.BatchNormalization(name="after_depthwise")(depthwise)  # folds
    outputs = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(after_depthwise), keras.layers.GlobalAveragePooling2D()(shared)]
    )
    model = _randomize_batch_norm(keras.Model(inputs, outputs))
    folded = fold_batch_norm(model)
    kinds = {layer.name: type(layer).__name__ for layer in folded.layers}
    assert kinds["pre"] == kinds["after_shared"] == kinds["after_activated"] == "BatchNormalization"
    assert kinds["after_depthwise"] == "FoldedBatchNorm"
    images = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(folded(images).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-5)


def test_sources_fold_by_default_and_serialise(tiny_source_path, tmp_path):
    folded = sources.from_file(tiny_source_path)
    plain = sources.Source(keras.saving.load_model(tiny_source_path), "tiny", fold_batch_norm=False)
    assert _count(folded.model, keras.layers.BatchNormalization) == 0
    assert _count(plain.model, keras.layers.BatchNormalization) == 1
    images = np.random.default_rng(3).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(folded(images).numpy(), plain(images).numpy(), rtol=1e-5, atol=1e-5)
    inputs = keras.Input((16, 16, 3))
    wrapper = keras.Model(inputs, folded(inputs))
    wrapper.save(tmp_path / "folded.keras")
    restored = keras.saving.load_model(tmp_path / "folded.keras")
    np.testing.assert_allclose(restored(images).numpy(), folded(images).numpy(), rtol=1e-6, atol=1e-6)


def test_models_without_a_graph_are_returned_unchanged():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 1)
            self.bn = keras.layers.BatchNormalization()

        def call(self, x):
            return self.bn(self.conv(x))

    model = Subclassed()
    model(np.zeros((1, 4, 4, 3), "float32"))
    assert fold_batch_norm(model) is model


@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_folding_keeps_the_layers_dtype_policy(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = torchvision_resnet.build("resnet18", 5)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    folded = fold_batch_norm(model)
    conv = folded.get_layer("conv1")
    assert conv.dtype_policy.name == policy and folded.get_layer("bn1").dtype_policy.name == policy
