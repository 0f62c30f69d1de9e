"""The method registry and the baselines (KD, DML, MAXL): loss formulas, meta-gradient, training."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from sskt_tf import methods, sources
from sskt_tf.errors import ConfigError
from sskt_tf.methods.base import Batch
from sskt_tf.methods.dml import DMLModel
from sskt_tf.methods.kd import KDModel
from sskt_tf.methods.maxl import MAXLModel, hierarchy_mask, mask_softmax
from sskt_tf.training.checks import validate as training_validate
from sskt_tf.training.config import TrainConfig
from sskt_tf.training.flags import to_flagfile


def tiny_target(num_classes, seed, size=16, dtype=None):
    """Conv-BN-ReLU ("stage1"), pooling ("pool") and the "logits" Dense: a target in miniature."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), dtype=dtype)
    x = keras.layers.Rescaling(1 / 255.0, dtype=dtype)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", dtype=dtype)(x)
    x = keras.layers.BatchNormalization(dtype=dtype)(x)
    x = keras.layers.ReLU(name="stage1", dtype=dtype)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits", dtype=dtype)(x))


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _ce(labels, logits):
    return -np.mean(_log_softmax(logits)[np.arange(len(labels)), labels])


def _kd(teacher_logits, student_logits, t):
    log_p, log_q = _log_softmax(teacher_logits / t), _log_softmax(student_logits / t)
    return t * t * np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))


@pytest.fixture(scope="module")
def batch():
    rng = np.random.RandomState(0)
    return rng.uniform(0, 255, (6, 16, 16, 3)).astype("float32"), rng.randint(0, 3, 6)


def test_registry_lists_every_method_and_refuses_unknown_names():
    assert methods.names()[0] == "sskt" and {"scratch", "kd", "dml", "maxl"} <= set(methods.names())
    assert {methods.get(name).uses_sources for name in methods.names()} == {True, False}
    with pytest.raises(ConfigError, match="Unknown --method=mixup; choose one of sskt, .*kd"):
        methods.get("mixup")


def test_kd_loss_is_weighted_ce_plus_scaled_kl(batch):
    images, labels = batch
    teacher = sources.Source(tiny_target(3, seed=1), "teacher", fold_batch_norm=False)
    model = KDModel(tiny_target(3, seed=2), teacher)
    model.compile("sgd", alpha=0.7, temperature=4.0)
    outputs, total, terms, _ = model.loss_terms(Batch(images, labels), training=False)
    student = model.target(images, training=False).numpy()
    teacher_logits = teacher(images).numpy()
    ce, kd = _ce(labels, student), _kd(teacher_logits, student, 4.0)
    np.testing.assert_allclose(outputs[0], student, rtol=1e-5)
    np.testing.assert_allclose([terms["target_loss"], terms["kd_loss"]], [ce, kd], rtol=1e-4)
    np.testing.assert_allclose(total, 0.3 * ce + 0.7 * kd, rtol=1e-4)
    assert not any(v.path.startswith("teacher") for v in model.trainable_variables)
    assert model.trainable_variables and all(v.trainable for v in model.target.trainable_variables)


def test_kd_refuses_a_teacher_of_another_label_space():
    teacher = sources.Source(tiny_target(5, seed=1), "teacher")
    with pytest.raises(ConfigError, match="predicts 5 classes but the target has 3"):
        KDModel(tiny_target(3, seed=2), teacher)


def test_dml_peers_each_get_ce_plus_kl_towards_the_other(batch):
    images, labels = batch
    model = DMLModel(tiny_target(3, seed=1), tiny_target(3, seed=2))
    model.compile("sgd", alpha=0.5, temperature=2.0, metrics=["accuracy"])
    z1, z2 = model.target(images).numpy(), model.peer2(images).numpy()
    assert not np.allclose(z1, z2)  # independently initialised
    _, total, terms, _ = model.loss_terms(Batch(images, labels), training=False)
    expected = {
        "target_loss": _ce(labels, z1),
        "peer2_target_loss": _ce(labels, z2),
        "mutual_loss": _kd(z2, z1, 2.0),
        "peer2_mutual_loss": _kd(z1, z2, 2.0),
    }
    for name, value in expected.items():
        np.testing.assert_allclose(terms[name], value, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(
        total,
        expected["target_loss"]
        + expected["peer2_target_loss"]
        + 0.5 * (expected["mutual_loss"] + expected["peer2_mutual_loss"]),
        rtol=1e-4,
    )
    # Each peer's gradient is that of its own loss only: the other peer is a constant.
    for peer, own_terms in (
        (model.target, ("target_loss", "mutual_loss")),
        (model.peer2, ("peer2_target_loss", "peer2_mutual_loss")),
    ):
        with tf.GradientTape() as tape:
            total = model.loss_terms(Batch(images, labels), training=False).total
        with tf.GradientTape() as own_tape:
            own = model.loss_terms(Batch(images, labels), training=False).terms
            own_loss = own[own_terms[0]] + 0.5 * own[own_terms[1]]
        variables = peer.trainable_variables
        for combined, alone in zip(tape.gradient(total, variables), own_tape.gradient(own_loss, variables)):
            np.testing.assert_allclose(combined, alone, rtol=1e-4, atol=1e-7)
    logs = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert {"accuracy", "peer2_accuracy", "target_loss", "peer2_mutual_loss"} <= set(logs)


def test_maxl_mask_softmax_keeps_each_label_within_its_classes_psi_block():
    mask = hierarchy_mask(3, 2)
    np.testing.assert_array_equal(mask, [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])
    logits = np.random.RandomState(0).randn(3, 6).astype("float32")
    labels = mask_softmax(logits, mask[[2, 0, 1]]).numpy()
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(labels > 0, mask[[2, 0, 1]] > 0)
    block = np.exp(logits[0, 4:]) / np.exp(logits[0, 4:]).sum()
    np.testing.assert_allclose(labels[0, 4:], block, rtol=1e-5)


def _focal(targets, logits, gamma=2.0):
    log_q = _log_softmax(logits)
    return np.mean(-np.sum(targets * (1 - np.exp(log_q)) ** gamma * log_q, axis=-1))


def test_maxl_terms_are_focal_losses_towards_labels_and_generated_labels(batch):
    images, labels = batch
    model = MAXLModel(tiny_target(3, seed=1), tiny_target(6, seed=2), psi=2)
    model.compile("sgd", weight_decay=0.0)
    _, total, terms, _ = model.loss_terms(Batch(images, labels), training=False)
    primary, auxiliary = [o.numpy() for o in model.multi_task(images, training=False)]
    generated = model.generated_labels(images, labels, training=False).numpy()
    np.testing.assert_allclose(generated.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(generated > 0, hierarchy_mask(3, 2)[labels] > 0)
    np.testing.assert_allclose(terms["primary_loss"], _focal(np.eye(3)[labels], primary), rtol=1e-4)
    np.testing.assert_allclose(terms["auxiliary_loss"], _focal(generated, auxiliary), rtol=1e-4)
    np.testing.assert_allclose(total, terms["primary_loss"] + terms["auxiliary_loss"], rtol=1e-5)


def _dense_net(num_outputs, seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(4)(keras.layers.Rescaling(1 / 128.0, offset=-1)(inputs)))
    x = keras.layers.Dense(6, activation="tanh", name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_outputs, name="logits")(x))


def test_maxl_meta_gradient_matches_finite_differences(batch):
    """The generator's gradient runs through the inner SGD step (second order)."""
    images, labels = batch
    model = MAXLModel(_dense_net(3, seed=1), _dense_net(6, seed=2), psi=2)
    model.compile(keras.optimizers.SGD(0.5), entropy_weight=0.2, generator_lr=0.1)
    kernel = model.generator.get_layer("logits").kernel

    def objective():
        labels_g = model.generated_labels(images, labels, training=True)
        return model.meta_objective(images, labels, labels_g)

    with tf.GradientTape() as tape:
        value, meta_loss, entropy = objective()
    analytic = tape.gradient(value, kernel).numpy()
    # The meta loss (not only the entropy term) depends on the generator.
    with tf.GradientTape() as tape:
        _, meta_loss, _ = objective()
    assert np.abs(tape.gradient(meta_loss, kernel).numpy()).max() > 1e-4
    original = kernel.numpy()
    eps = 1e-2
    numeric = np.zeros_like(original)
    for index in np.ndindex(*original.shape):
        values = []
        for sign in (1, -1):
            shifted = original.copy()
            shifted[index] += sign * eps
            kernel.assign(shifted)
            values.append(float(objective()[0]))
        numeric[index] = (values[0] - values[1]) / (2 * eps)
    kernel.assign(original)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-4)


def test_maxl_train_step_updates_both_networks(batch):
    images, labels = batch
    model = MAXLModel(tiny_target(3, seed=1), tiny_target(6, seed=2), psi=2)
    # No entropy term and no decay: only the meta gradient can move the generator.
    model.compile(
        keras.optimizers.SGD(0.1), entropy_weight=0.0, generator_lr=0.5, weight_decay=0.0, metrics=["accuracy"]
    )
    before = [v.numpy() for v in (*model.multi_task.trainable_variables, *model.generator.trainable_variables)]
    logs = model.train_on_batch(images, labels, return_dict=True)
    after = [v.numpy() for v in (*model.multi_task.trainable_variables, *model.generator.trainable_variables)]
    assert {"loss", "primary_loss", "auxiliary_loss", "meta_loss", "entropy_loss", "accuracy"} <= set(logs)
    assert all(np.isfinite(v) for v in logs.values())
    np.testing.assert_allclose(logs["loss"], logs["primary_loss"] + logs["auxiliary_loss"], rtol=1e-5)
    changed = [not np.allclose(b, a) for b, a in zip(before, after)]
    split = len(model.multi_task.trainable_variables)
    assert any(changed[:split]) and any(changed[split:])
    assert model.generator_optimizer.iterations.numpy() == 1
    val = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert "meta_loss" not in val and "primary_loss" in val


def _digits_config(tmp_path, digits_folder, **overrides):
    settings = dict(
        dataset=f"folder:{digits_folder}",
        image_size=16,
        target="resnet20",
        sources=[],
        epochs=1,
        steps_per_epoch=2,
        batch_size=16,
        lr=0.05,
        lr_milestones=[],
        seed=0,
        verbose=0,
        model_dir=str(tmp_path / "run"),
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def _tiny_model(method):
    """Each baseline around tiny networks, compiled."""
    if method == "kd":
        model = KDModel(tiny_target(3, seed=1), sources.Source(tiny_target(3, seed=2), "teacher"))
        model.compile(keras.optimizers.SGD(0.1), alpha=0.9, temperature=4.0, metrics=["accuracy"])
    elif method == "dml":
        model = DMLModel(tiny_target(3, seed=1), tiny_target(3, seed=2))
        model.compile(keras.optimizers.SGD(0.1), alpha=1.0, temperature=1.0, metrics=["accuracy"])
    else:
        model = MAXLModel(tiny_target(3, seed=1), tiny_target(6, seed=2), psi=2)
        model.compile(keras.optimizers.SGD(0.1), generator_lr=0.01, metrics=["accuracy"])
    return model


@pytest.mark.parametrize(
    "method, terms",
    [
        ("kd", ("target_loss", "kd_loss")),
        ("dml", ("target_loss", "mutual_loss", "peer2_target_loss", "peer2_mutual_loss", "peer2_accuracy")),
        ("maxl", ("primary_loss", "auxiliary_loss", "meta_loss", "entropy_loss")),
    ],
)
def test_each_baseline_fits_with_validation(method, terms, batch):
    images, labels = batch
    model = _tiny_model(method)
    before = [v.numpy() for v in model.target.trainable_variables]
    history = model.fit(images, labels, validation_data=(images, labels), batch_size=3, epochs=2, verbose=0).history
    assert {"loss", "accuracy", "val_loss", "val_accuracy", *terms} <= set(history)
    assert all(np.all(np.isfinite(values)) for values in history.values())
    assert not all(np.allclose(b, v.numpy()) for b, v in zip(before, model.target.trainable_variables))


@pytest.mark.slow
def test_kd_trains_through_train_lib_and_saves_the_student(tmp_path, digits_folder):
    from sskt_tf import training

    teacher = tiny_target(10, seed=3)
    teacher.save(tmp_path / "teacher.keras")
    results = training.train(
        _digits_config(
            tmp_path, digits_folder, method="kd", alpha=0.9, temperature=4.0, teacher=str(tmp_path / "teacher.keras")
        )
    )
    assert results["method"] == "kd" and results["sources"] == []
    assert np.isfinite(results["val_kd_loss"]) and 0.0 <= results["val_accuracy"] <= 1.0
    with open(tmp_path / "run" / "results.json") as f:
        assert json.load(f)["method"] == "kd"
    saved = keras.saving.load_model(tmp_path / "run" / "best.keras", compile=False)
    assert saved.name == "resnet20" and saved.count_params() == results["target_parameters"]


@pytest.mark.parametrize("method", ["dml", "maxl"])
def test_registry_builds_the_baselines_from_flags(method, digits_folder):
    from sskt_tf import data as data_lib
    from sskt_tf import training

    data = data_lib.load(f"folder:{digits_folder}", 16, image_size=16)
    config = TrainConfig(method=method, target="resnet20", sources=[], maxl_psi=3, alpha=1.0, temperature=1.0)
    model = training.loop.build_model(config, data)
    training.loop.compile_model(model, config)
    assert model.target.name == "resnet20" and model.target.output_shape == (None, 10)
    if method == "dml":
        assert model.peer2.output_shape == (None, 10) and model.alpha == 1.0
    else:
        assert model.generator.output_shape == (None, 30) and model.psi == 3
        assert model.entropy_weight == pytest.approx(0.2)
        assert model.generator_lr_ratio == pytest.approx(1e-3 / config.lr)


def test_scratch_ignores_the_sources_flag(digits_folder):
    from sskt_tf import data as data_lib
    from sskt_tf import training

    data = data_lib.load(f"folder:{digits_folder}", 16, image_size=16)
    config = TrainConfig(
        dataset=f"folder:{digits_folder}", method="scratch", sources=["/nonexistent/source.keras"], target="resnet20"
    )
    model = training.loop.build_model(training.validate(config), data)  # the source is neither checked nor built
    assert model.sources == [] and model.target.output_shape == (None, 10)


@pytest.mark.parametrize(
    "method,expected", [("sskt", (0.1, 3.0)), ("kd", (0.9, 4.0)), ("dml", (1.0, 1.0)), ("maxl", (None, None))]
)
def test_each_method_fills_in_its_own_alpha_and_temperature(method, expected, tmp_path, digits_folder):
    teacher = tmp_path / "teacher.keras"
    teacher.write_bytes(b"")  # KD checks that its teacher exists
    config = TrainConfig(
        dataset=f"folder:{digits_folder}",
        method=method,
        sources=[str(teacher)] if method == "sskt" else [],
        teacher=str(teacher),
    )
    assert (config.alpha, config.temperature) == (None, None)  # unset: the method decides
    validated = training_validate(config)
    assert (validated.alpha, validated.temperature) == expected
    assert methods.get(method).defaults == (
        {} if expected == (None, None) else dict(zip(("alpha", "temperature"), expected))
    )
    # What the user set is kept, and the resolved values are what flags.txt records.
    explicit = training_validate(dataclasses.replace(config, alpha=0.5, temperature=2.0))
    assert (explicit.alpha, explicit.temperature) == (0.5, 2.0)
    if expected != (None, None):
        assert f"--alpha={expected[0]}" in to_flagfile(validated).splitlines()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(method="kd"), "--method=kd needs --teacher=PATH"),
        (dict(method="kd", teacher="/nonexistent/t.keras"), "--teacher=/nonexistent/t.keras does not exist"),
        (dict(method="kd", teacher="x.keras", alpha=1.5), "--alpha must be in \\[0, 1\\]"),
        (dict(method="maxl", maxl_psi=0), "--maxl_psi=0: must be >= 1"),
        (dict(method="maxl", mixed_precision="mixed_float16"), "does not support --mixed_precision=mixed_float16"),
        (dict(method="dml", soft_label_cache="/tmp/cache"), "does not use"),
        (dict(method="boost"), "Unknown --method=boost"),
    ],
)
def test_method_flag_errors(overrides, message, tmp_path, digits_folder):
    from sskt_tf import training

    with pytest.raises(ConfigError, match=message):
        training.train(_digits_config(tmp_path, digits_folder, **overrides))
