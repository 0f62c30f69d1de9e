"""SSKTModel: plain-classifier call, frozen sources, loss composition, metrics."""

import keras
import numpy as np
import pytest

from sskt_tf import SSKTModel, sources, targets
from sskt_tf.errors import ConfigError
from sskt_tf.methods import losses
from sskt_tf.methods.base import Batch


def small_target(num_classes=10):
    return targets.get("resnet20", num_classes, image_size=16)


@pytest.fixture()
def batch(digits):
    train_x, train_y, _, _ = digits
    return train_x[:64].astype("float32"), train_y[:64]


def test_call_returns_only_target_logits(tiny_source_path, batch):
    x, _ = batch
    target = small_target()
    model = SSKTModel(target, [sources.from_file(tiny_source_path)])
    out = model(x[:4])
    assert not isinstance(out, (list, tuple, dict)) and out.shape == (4, 10)
    np.testing.assert_allclose(out, target(x[:4]), atol=1e-6)
    model.compile("sgd")
    assert model.predict(x[:4], verbose=0).shape == (4, 10)


def test_only_target_and_heads_are_trainable(tiny_source_path):
    target = small_target()
    source = sources.from_file(tiny_source_path)
    model = SSKTModel(target, [source])
    trainable = {id(v) for v in model.trainable_variables}
    expected = {id(v) for v in target.trainable_variables} | {id(v) for v in model.heads[0].trainable_variables}
    assert trainable == expected
    assert not trainable & {id(v) for v in source.weights}


@pytest.mark.slow
def test_fit_trains_target_and_heads_but_never_sources(tiny_source_path, batch):
    x, y = batch
    # Unfolded, so the source keeps BatchNorm moving statistics that must not move.
    source = sources.Source(keras.saving.load_model(tiny_source_path), "tiny", fold_batch_norm=False)
    model = SSKTModel(small_target(), [source], head="transfer")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), metrics=["accuracy"], weight_decay=5e-4)
    source_before = [w.numpy().copy() for w in source.weights]
    moving_stats = [w for w in source.weights if "moving" in w.path]
    assert len(moving_stats) == 2  # the tiny source has a BatchNorm layer
    target_before = [w.numpy().copy() for w in model.target.trainable_weights]
    head_before = [w.numpy().copy() for w in model.heads[0].trainable_weights]
    history = model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0)
    for before, weight in zip(source_before, source.weights):
        np.testing.assert_array_equal(before, weight.numpy(), err_msg=weight.path)
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(target_before, model.target.trainable_weights))
    assert all(not np.allclose(b, w.numpy()) for b, w in zip(head_before, model.heads[0].trainable_weights))
    assert {
        "loss",
        "target_loss",
        "aux_tiny_loss",
        "accuracy",
        "val_loss",
        "val_target_loss",
        "val_aux_tiny_loss",
        "val_accuracy",
    } <= set(history.history)


def test_loss_is_target_plus_alpha_times_aux_plus_l2(tiny_source_path, batch):
    x, y = batch
    source = sources.from_file(tiny_source_path)
    model = SSKTModel(small_target(), [source], head="linear")
    model.compile("sgd", alpha=0.7, temperature=2.0, weight_decay=1e-3, metrics=["accuracy"])
    result = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    # Recompute every term by hand from the parts.
    target_logits, head_logits = [np.asarray(o) for o in model._forward(x, training=False)]
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, target_logits))
    kd = float(losses.KDLoss(2.0)(np.asarray(source(x)), head_logits))
    l2 = 0.5 * 1e-3 * sum(float(np.sum(np.square(v.numpy()))) for v in model.trainable_variables)
    assert result["target_loss"] == pytest.approx(ce, rel=1e-4)
    assert result["aux_tiny_loss"] == pytest.approx(kd, rel=1e-4)
    assert result["loss"] == pytest.approx(ce + 0.7 * kd + l2, rel=1e-4)
    assert result["accuracy"] == pytest.approx(np.mean(np.argmax(target_logits, -1) == y), abs=1e-6)


def test_two_sources_get_two_heads(tiny_source_path, batch):
    x, y = batch
    first = sources.from_file(tiny_source_path, name="first")
    second = sources.imagenet("mobilenetv2", weights=None, input_size=32, name="second")
    model = SSKTModel(small_target(), [first, second])
    assert [h.num_classes for h in model.heads] == [5, 1000]
    model.compile("sgd")
    logs = model.evaluate(x[:8], y[:8], return_dict=True, verbose=0)
    assert {"aux_first_loss", "aux_second_loss"} <= set(logs)


def test_scratch_baseline_has_no_heads(batch):
    x, y = batch
    model = SSKTModel(small_target(), [])
    model.compile("sgd", metrics=["accuracy"])
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert model.heads == [] and set(history.history) == {"loss", "target_loss", "accuracy"}
    assert len(model.trainable_variables) == len(model.target.trainable_variables)


def test_feature_layer_and_name_errors(tiny_source_path):
    source = sources.from_file(tiny_source_path)
    with pytest.raises(ConfigError, match="has no layer among"):
        SSKTModel(small_target(), [source], feature_layers=["block9"])
    with pytest.raises(ConfigError, match="Source names must be unique"):
        SSKTModel(small_target(), [source, sources.from_file(tiny_source_path)])
    plain = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(name="flatten"), keras.layers.Dense(10)])
    with pytest.raises(ConfigError, match="no layers named stage1"):
        SSKTModel(plain, [source], head="transfer")
    assert SSKTModel(plain, [source], head="linear").feature_layers == ["flatten"]


@pytest.mark.slow
def test_whole_model_saves_and_resumes_identically(tiny_source_path, batch, tmp_path):
    x, y = batch
    model = SSKTModel(small_target(), [sources.from_file(tiny_source_path)])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), alpha=0.3, weight_decay=1e-4, metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "sskt.keras")
    restored = keras.saving.load_model(tmp_path / "sskt.keras")
    assert (restored.alpha, restored.weight_decay, restored.feature_layers) == (0.3, 1e-4, model.feature_layers)
    # Optimizer state (momentum) comes back too: one more epoch gives the same weights.
    for m in (model, restored):
        m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize("aux_loss", ["kd", "soft_ce"])
def test_a_head_equal_to_its_source_agrees_fully_and_sits_at_the_loss_floor(tiny_source_path, aux_loss):
    model = SSKTModel(small_target(), [sources.from_file(tiny_source_path)], head="linear")
    model.compile("sgd", aux_loss=aux_loss, temperature=2.0)
    soft = np.array([[2.0, 0.5, -1.0, 0.0, 0.1], [0.0, 3.0, 1.0, -2.0, 0.5]], "float32")
    target_logits = np.zeros((2, 10), "float32")
    batch = Batch(np.zeros((2, 16, 16, 3), "float32"), np.array([1, 2]), soft_labels=[soft])
    name = model.sources[0].name
    losses = model.losses_from_outputs(batch, [target_logits, soft], training=False)
    p = np.exp(soft / 2) / np.exp(soft / 2).sum(-1, keepdims=True)
    floor = 0.0 if aux_loss == "kd" else 4.0 * float(np.mean(-(p * np.log(p)).sum(-1)))  # T^2 * entropy
    np.testing.assert_allclose(float(losses.terms[f"aux_{name}_floor"]), floor, atol=1e-5)
    np.testing.assert_allclose(float(losses.terms[f"aux_{name}_loss"]), floor, atol=1e-5)
    assert np.asarray(losses.rates[f"aux_{name}_agreement"]).tolist() == [1.0, 1.0]
    # A head that agrees on the first example's top-1 class only, and sits above the floor.
    other = soft.copy()
    other[1] = [5.0, 0.0, 0.0, 0.0, 0.0]
    losses = model.losses_from_outputs(batch, [target_logits, other], training=False)
    assert np.asarray(losses.rates[f"aux_{name}_agreement"]).tolist() == [1.0, 0.0]
    assert float(losses.terms[f"aux_{name}_loss"]) > float(losses.terms[f"aux_{name}_floor"]) + 0.1


def test_training_reports_each_heads_floor_and_agreement(tiny_source_path, batch):
    x, y = batch
    model = SSKTModel(small_target(), [sources.from_file(tiny_source_path)])
    model.compile(keras.optimizers.SGD(0.05), aux_loss="soft_ce", weighted_metrics=["accuracy"])
    logs = model.fit(x, y, batch_size=32, epochs=1, validation_data=(x[:32], y[:32]), verbose=0).history
    for name in ("aux_tiny_floor", "aux_tiny_agreement", "val_aux_tiny_floor", "val_aux_tiny_agreement"):
        assert name in logs, sorted(logs)
    assert 0.0 <= logs["aux_tiny_agreement"][0] <= 1.0 and logs["aux_tiny_loss"][0] >= logs["aux_tiny_floor"][0]
