"""Unlabelled images train the auxiliary losses, never the target loss."""

import contextlib
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from sskt_tf import SSKTModel, sources
from sskt_tf.data import UNLABELED
from sskt_tf.data.folder import load_unlabeled_folder
from sskt_tf.data.pipeline import interleaved_order
from sskt_tf.errors import ConfigError, Preempted
from sskt_tf.methods.base import Batch
from sskt_tf.training import backup as backup_lib
from sskt_tf.training import history, train
from sskt_tf.training.build_cache import build_soft_label_cache
from sskt_tf.training.checks import validate
from sskt_tf.training.flags import config_from_args
from sskt_tf.training.run_data import load_data

# digits_folder: 300 training images of 10 classes; 8 labelled a class leaves 220 unlabelled.
LABELLED, BATCH, PER_BATCH = 80, 16, 8


def _config(digits_folder, tiny_source_path, tmp_path, *extra):
    return config_from_args(
        [
            f"--dataset=folder:{digits_folder}",
            "--image_size=16",
            f"--sources={tiny_source_path}",
            "--train_examples_per_class=8",
            "--unlabeled_from_rest",
            "--unlabeled_ratio=0.5",
            f"--batch_size={BATCH}",
            "--epochs=2",
            "--lr=0.05",
            "--verbose=0",
            "--deterministic",
            f"--model_dir={tmp_path / 'run'}",
            *extra,
        ]
    )


def test_interleaving_spreads_unlabelled_examples_evenly():
    assert interleaved_order(2, 2).tolist() == [0, 2, 1, 3]
    assert interleaved_order(2, 4).tolist() == [0, 2, 3, 1, 4, 5]
    assert interleaved_order(4, 2).tolist() == [0, 4, 1, 2, 5, 3]


def test_batches_hold_labelled_and_unlabelled_examples_in_the_asked_ratio(digits_folder, tiny_source_path, tmp_path):
    config = validate(_config(digits_folder, tiny_source_path, tmp_path, "--noaugment"))
    data = load_data(config)
    assert (data.train_examples, data.unlabeled_examples, data.unlabeled_per_batch) == (LABELLED, 220, PER_BATCH)
    steps = data.steps_per_epoch
    assert steps == LABELLED // BATCH
    epochs = list(data.train.take(2 * steps))
    is_unlabelled = interleaved_order(BATCH, PER_BATCH) >= BATCH  # l l u l l u ...
    for images, labels in epochs:
        assert images.shape[0] == BATCH + PER_BATCH
        np.testing.assert_array_equal(labels.numpy() == UNLABELED, is_unlabelled)
    # Each epoch holds every labelled example once (8 a class) and 40 unlabelled ones.
    first = np.concatenate([labels.numpy() for _, labels in epochs[:steps]])
    assert np.bincount(first[first >= 0]).tolist() == [8] * 10 and (first == UNLABELED).sum() == steps * PER_BATCH
    # Epoch 1's batches depend on the seed and the epoch alone: a resumed run gets the same.
    for (images, labels), (again, again_labels) in zip(epochs[steps:], data.batches_from_epoch(1).take(steps)):
        np.testing.assert_array_equal(images.numpy(), again.numpy())
        np.testing.assert_array_equal(labels.numpy(), again_labels.numpy())


def _tiny_target_without_batch_norm():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))


def test_the_target_loss_ignores_unlabelled_examples_exactly(tiny_source_path):
    # A target without BatchNorm, so that extra examples change nothing but the losses.
    keras.utils.set_random_seed(0)
    model = SSKTModel(_tiny_target_without_batch_norm(), [sources.from_file(tiny_source_path)], head="linear")
    model.compile("sgd", loss="ce", labelled_fraction=0.5)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    extra = rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    labels = np.array([0, 3, 1, 4])
    order = interleaved_order(4, 4)
    mixed_images = np.concatenate([images, extra])[order]
    mixed_labels = np.concatenate([labels, [UNLABELED] * 4])[order]

    aux = f"aux_{model.sources[0].name}_loss"

    def target_term(images, y, fraction):
        model.labelled_fraction = fraction
        batch = model.prepare(Batch(images, y), training=True)
        with tf.GradientTape() as tape:
            terms = model.loss_terms(batch, training=True).terms
        return terms, tape.gradient(terms["target_loss"], model.target.trainable_variables)

    alone, alone_gradients = target_term(images, labels, 1.0)
    mixed, mixed_gradients = target_term(mixed_images, mixed_labels, 0.5)
    np.testing.assert_allclose(float(mixed["target_loss"]), float(alone["target_loss"]), rtol=1e-6)
    for a, b in zip(alone_gradients, mixed_gradients):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-7)
    # The auxiliary loss is the mean over all eight examples.
    extra_aux = target_term(extra, np.zeros(4, int), 1.0)[0][aux]
    np.testing.assert_allclose(float(mixed[aux]), (float(alone[aux]) + float(extra_aux)) / 2, rtol=1e-5)


@contextlib.contextmanager
def _sigterm_after(steps):
    """Stands for backup.stop_signals_request_stop: its ``steps``-th question (a step, an epoch end) says SIGTERM."""
    calls = []

    def stop_requested():
        calls.append(None)
        return "SIGTERM" if len(calls) >= steps else None

    yield stop_requested


@pytest.mark.slow
def test_sskt_from_a_cache_with_unlabelled_images_resumes_mid_epoch_as_if_never_stopped(
    digits_folder, tiny_source_path, tmp_path, monkeypatch
):
    cache_dir = tmp_path / "cache"
    base = _config(digits_folder, tiny_source_path, tmp_path, f"--soft_label_cache={cache_dir}")
    manifest = build_soft_label_cache(base, views=2)
    assert manifest["settings"]["unlabeled_examples"] == 220 and manifest["settings"]["train_examples"] == LABELLED
    assert sum(shard["examples"] for shard in manifest["shards"][0]) == LABELLED + 220

    whole = train(dataclasses.replace(base, model_dir=str(tmp_path / "whole")))
    assert (whole["train_examples"], whole["unlabeled_examples"], whole["unlabeled_per_batch"]) == (LABELLED, 220, 8)

    stopped = dataclasses.replace(base, model_dir=str(tmp_path / "stopped"), backup_every_steps=100)
    with monkeypatch.context() as patch:
        patch.setattr(backup_lib, "stop_signals_request_stop", lambda: _sigterm_after(LABELLED // BATCH + 3))
        with pytest.raises(Preempted, match="backed up at step 2 of epoch 2"):
            train(stopped)
    resumed = train(stopped)
    assert (resumed["resumed_from_epoch"], resumed["resumed_from_step"]) == (1, 2)
    rows = history.read_history(str(tmp_path / "stopped" / "history.csv"))
    whole_rows = history.read_history(str(tmp_path / "whole" / "history.csv"))
    for key in ("loss", "accuracy", "target_loss", "aux_tiny_loss", "val_accuracy"):
        np.testing.assert_allclose([float(r[key]) for r in rows], [float(r[key]) for r in whole_rows], rtol=1e-5)
    last = keras.saving.load_model(tmp_path / "stopped" / "last.keras")
    for a, b in zip(last.weights, keras.saving.load_model(tmp_path / "whole" / "last.keras").weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)

    # The cache covers the unlabelled images: a run without them (or with others) is refused.
    with pytest.raises(ConfigError, match="--unlabeled_from_rest: cache True, this run None"):
        train(dataclasses.replace(base, unlabeled_from_rest=False, model_dir=str(tmp_path / "other")))


@pytest.mark.slow
def test_kd_distils_on_unlabelled_images_too(digits_folder, tiny_source_path, tmp_path):
    # The tiny source has 5 outputs: a teacher for the first five digits.
    classes = "--classes=" + ",".join(f"digit{i}" for i in range(5))
    config = _config(
        digits_folder, tiny_source_path, tmp_path, "--method=kd", f"--teacher={tiny_source_path}", "--sources=", classes
    )
    results = train(dataclasses.replace(config, epochs=1))
    rest = sum(len(list((digits_folder / "train" / f"digit{i}").iterdir())) for i in range(5)) - 40
    assert (results["train_examples"], results["unlabeled_examples"], results["unlabeled_per_batch"]) == (40, rest, 8)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["unlabeled_examples"] == rest and np.isfinite(saved["kd_loss"]) and 0 <= saved["accuracy"] <= 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--method=scratch", "--sources="], "--method=scratch has no loss that learns from unlabelled images.*sskt"),
        (["--method=dml", "--sources="], "--method=dml has no loss that learns"),
        (["--nocache"], "keep --cache"),
        (["--unlabeled_dataset=stl10"], "use folder:DIR .* or a tfds split as NAME:SPLIT"),
        (["--target_loss=bce"], "single-label"),
    ],
)
def test_settings_that_cannot_use_unlabelled_images_are_refused(
    digits_folder, tiny_source_path, tmp_path, flags, message
):
    with pytest.raises(ConfigError, match=message):
        validate(_config(digits_folder, tiny_source_path, tmp_path, *flags))
    # Without --train_examples_per_class every image is labelled: there is no rest.
    every_image = dataclasses.replace(_config(digits_folder, tiny_source_path, tmp_path), train_examples_per_class=None)
    with pytest.raises(ConfigError, match="--unlabeled_from_rest uses the training images --train_examples_per_class"):
        validate(every_image)


def test_an_unlabelled_folder_reads_every_image_below_it(tmp_path, digits):
    from PIL import Image

    images = digits[0][:5]
    for index, image in enumerate(images):
        folder = tmp_path / "pool" / ("a" if index < 2 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    (tmp_path / "pool" / "notes.jpg").write_text("not an image")
    dataset, count = load_unlabeled_folder(str(tmp_path / "pool"), 16)
    examples = list(dataset)
    assert count == 5 and len(examples) == 5 and all(int(label) == UNLABELED for _, label in examples)
    np.testing.assert_array_equal(examples[0][0].numpy(), images[0])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image"):
        load_unlabeled_folder(str(tmp_path / "empty"), 16)
    with pytest.raises(ConfigError, match="does not exist"):
        load_unlabeled_folder(str(tmp_path / "missing"), 16)
