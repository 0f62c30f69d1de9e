"""Losses against hand-computed values, and their scaling under tf.distribute."""

import math

import numpy as np
import pytest
import tensorflow as tf

from sskt_tf.methods import losses

SOURCE = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
HEAD = np.array([[0.0, 1.0, 0.0], [1.0, -2.0, 0.5]], np.float32)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_kd_is_t_squared_kl_summed_over_classes_averaged_over_batch(temperature):
    p, q = softmax(SOURCE / temperature), softmax(HEAD / temperature)
    expected = temperature**2 * np.mean(np.sum(p * np.log(p / q), axis=-1))
    assert float(losses.get("kd", temperature=temperature)(SOURCE, HEAD)) == pytest.approx(expected, rel=1e-5)


def test_kd_is_zero_when_head_matches_source():
    assert float(losses.KDLoss(3.0)(SOURCE, SOURCE)) == pytest.approx(0.0, abs=1e-6)


def test_soft_ce_hand_computed_and_differs_from_kd_by_source_entropy():
    t = 3.0
    p, q = softmax(SOURCE / t), softmax(HEAD / t)
    expected = t * t * np.mean(-np.sum(p * np.log(q), axis=-1))
    soft_ce = float(losses.get("soft_ce", temperature=t)(SOURCE, HEAD))
    assert soft_ce == pytest.approx(expected, rel=1e-5)
    entropy = t * t * np.mean(-np.sum(p * np.log(p), axis=-1))
    assert soft_ce - float(losses.get("kd", temperature=t)(SOURCE, HEAD)) == pytest.approx(entropy, rel=1e-4)


def test_kd_and_soft_ce_have_identical_gradients():
    import tensorflow as tf

    head = tf.Variable(HEAD)
    gradients = []
    for name in ("kd", "soft_ce"):
        with tf.GradientTape() as tape:
            value = losses.get(name, temperature=2.0)(SOURCE, head)
        gradients.append(tape.gradient(value, head).numpy())
    np.testing.assert_allclose(gradients[0], gradients[1], atol=1e-6)


def test_bce_uses_sigmoid_targets():
    t = 2.0
    p, q = sigmoid(SOURCE / t), sigmoid(HEAD / t)
    expected = t * t * np.mean(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q)), axis=-1))
    assert float(losses.get("bce", temperature=t)(SOURCE, HEAD)) == pytest.approx(expected, rel=1e-5)


def test_focal_soft_targets_gamma_2():
    t = 3.0
    p, q = softmax(SOURCE / t), softmax(HEAD / t)
    expected = t * t * np.mean(-np.sum(p * (1 - q) ** 2 * np.log(q), axis=-1))
    assert float(losses.get("focal", temperature=t)(SOURCE, HEAD)) == pytest.approx(expected, rel=1e-5)


def test_target_losses_on_integer_labels():
    labels = np.array([2, 0])
    probs = softmax(HEAD)
    ce = -np.mean(np.log(probs[np.arange(2), labels]))
    assert float(losses.get_target_loss("ce")(labels, HEAD)) == pytest.approx(ce, rel=1e-5)
    p_true = probs[np.arange(2), labels]
    focal = np.mean(-((1 - p_true) ** 2) * np.log(p_true))
    assert float(losses.get_target_loss("focal")(labels, HEAD)) == pytest.approx(focal, rel=1e-5)
    multi_hot = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    q = sigmoid(HEAD)
    bce = np.mean(-(multi_hot * np.log(q) + (1 - multi_hot) * np.log(1 - q)))
    assert float(losses.get_target_loss("bce")(multi_hot, HEAD)) == pytest.approx(bce, rel=1e-5)


def test_unknown_loss_names_are_rejected():
    with pytest.raises(ValueError, match="Unknown auxiliary loss 'mse'"):
        losses.get("mse")
    with pytest.raises(ValueError, match="Unknown target loss"):
        losses.get_target_loss("hinge")
    with pytest.raises(ValueError, match="temperature must be positive"):
        losses.KDLoss(temperature=0)


def test_losses_serialise():
    import keras

    loss = losses.SoftFocalLoss(temperature=4.0, gamma=1.5)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (restored.temperature, restored.gamma) == (4.0, 1.5)
    assert math.isclose(float(restored(SOURCE, HEAD)), float(loss(SOURCE, HEAD)), rel_tol=1e-6)


def test_multi_label_bce_ignores_difficult_labels():
    labels = np.array([[1, -1, 0], [-1, 0, 1]], np.float32)
    q = sigmoid(HEAD)
    known = labels >= 0
    element = -(labels * np.log(q) + (1 - labels) * np.log(1 - q))
    expected = np.mean(np.where(known, element, 0.0).sum(axis=1) / 3)
    assert float(losses.get_target_loss("bce")(labels, HEAD)) == pytest.approx(expected, rel=1e-5)
    # The ignored pairs get no gradient.
    logits = tf.Variable(HEAD)
    with tf.GradientTape() as tape:
        loss = losses.get_target_loss("bce")(labels, logits)
    gradient = tape.gradient(loss, logits).numpy()
    assert gradient[0, 1] == 0 and gradient[1, 0] == 0 and gradient[0, 0] != 0
