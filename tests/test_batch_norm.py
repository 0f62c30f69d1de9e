"""The targets' BatchNorm: TensorFlow's fused kernel in training, Keras' layer otherwise, same results."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sskt_tf.batch_norm import BatchNorm, batch_norm
from sskt_tf.train_lib import dtype_policy


def _pair(shape, policy="float32"):
    """A :class:`BatchNorm` and a Keras BatchNormalization with the same (non-trivial) weights."""
    with dtype_policy(policy):
        ours = batch_norm("ours")
        keras_bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name="keras")
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 1.5, shape[-1]), rng.uniform(-1, 1, shape[-1])
    for layer in (ours, keras_bn):
        layer.build(shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    return ours, keras_bn


def _train_step(layer, x):
    """Output, input gradient and weight gradients of one training call."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(tf.cast(x, layer.compute_dtype), training=True)
        loss = tf.reduce_sum(tf.cast(outputs, "float32") ** 2 * tf.range(1.0, x.shape[-1] + 1.0))
    return [outputs, *tape.gradient(loss, [x, layer.gamma, layer.beta])]


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_training_matches_keras_batch_normalization(policy):
    x = np.random.default_rng(1).normal(3, 2, (6, 5, 7, 4)).astype("float32")
    ours, keras_bn = _pair(x.shape, policy)
    for _ in range(2):  # the second step starts from updated moving statistics
        for a, b in zip(_train_step(ours, x), _train_step(keras_bn, x)):
            np.testing.assert_allclose(np.float32(a), np.float32(b), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean.numpy(), keras_bn.moving_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours.moving_variance.numpy(), keras_bn.moving_variance.numpy(), rtol=1e-5)
    assert not np.allclose(ours.moving_variance.numpy(), 1.0)  # the statistics did move
    # Inference (Keras' own path) agrees too.
    np.testing.assert_allclose(np.float32(ours(x, training=False)), np.float32(keras_bn(x, training=False)), rtol=1e-3,
                               atol=1e-3)


def test_training_uses_the_fused_kernel_with_one_replica_only():
    layer = batch_norm("bn")
    layer.build((None, 4, 4, 3))
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec((2, 4, 4, 3))).graph
    assert "FusedBatchNormV3" in {op.type for op in graph.get_operations()}
    # Keras' path for other ranks (a Dense feature vector, say).
    flat = batch_norm("flat")
    graph = tf.function(lambda x: flat(x, training=True)).get_concrete_function(tf.TensorSpec((2, 3))).graph
    assert "FusedBatchNormV3" not in {op.type for op in graph.get_operations()}


def test_batch_norm_layers_save_and_load(tmp_path):
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, batch_norm("bn")(inputs))
    model.layers[-1].moving_mean.assign([1.0, 2.0, 3.0])
    path = str(tmp_path / "bn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[-1], BatchNorm) and loaded.layers[-1].synchronized
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
