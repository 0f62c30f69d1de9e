"""--validation_freq: which epochs validate, the history rows, best-checkpoint selection and resume."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from sskt_tf import TrainConfig, training
from sskt_tf.training import backup, history


def test_validation_epochs_are_every_nth_and_the_last():
    assert training.run_data.validation_epochs(10, 4) == [4, 8, 10]
    assert training.run_data.validation_epochs(8, 4) == [4, 8]
    assert training.run_data.validation_epochs(3, 1) == [1, 2, 3]
    assert training.run_data.validation_epochs(3, 5) == [3]


def test_history_logger_rewrites_the_header_when_columns_appear(tmp_path):
    path = str(tmp_path / "history.csv")
    logger = history.HistoryLogger(path)
    logger.on_epoch_end(0, {"loss": 2.0})
    logger.on_epoch_end(1, {"loss": 1.5, "val_accuracy": 0.25})
    logger.on_epoch_end(2, {"loss": 1.0})
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,loss,val_accuracy",
        "1,2.0,",
        "2,1.5,0.25",
        "3,1.0,",
    ]
    rows = history.read_history(path)
    assert [history.history_values(row) for row in rows] == [
        {"loss": 2.0},
        {"loss": 1.5, "val_accuracy": 0.25},
        {"loss": 1.0},
    ]


class _StopAfter(keras.callbacks.Callback):
    """Stops fit after ``epochs`` epochs (1-based): a stand-in for a kill after that epoch's backup."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


@pytest.mark.slow
def test_validation_every_n_epochs_with_best_selection_and_resume(digits_folder, tmp_path, monkeypatch):
    config = TrainConfig(
        dataset=f"folder:{digits_folder}",
        image_size=16,
        sources=[],
        method="scratch",
        epochs=7,
        validation_freq=3,
        batch_size=50,
        lr_milestones=[],
        verbose=0,
        seed=0,
        model_dir=str(tmp_path / "run"),
    )
    build_callbacks = training.loop._callbacks
    # The first call stops after epoch 5 and keeps its backup, as a kill after epoch 5 would.
    monkeypatch.setattr(
        training.loop,
        "_callbacks",
        lambda *args: (lambda nan_guard, saver, cbs: (nan_guard, saver, [_StopAfter(5), *cbs]))(
            *build_callbacks(*args)
        ),
    )
    monkeypatch.setattr(backup.FiniteBackupAndRestore, "delete", lambda self: None)
    training.train(config)
    (tmp_path / "run" / "results.json").unlink()
    stopped = history.read_history(str(tmp_path / "run" / "history.csv"))
    assert [row["val_accuracy"] != "" for row in stopped] == [False, False, True, False, False]
    monkeypatch.setattr(training.loop, "_callbacks", build_callbacks)

    results = training.train(config)
    rows = history.read_history(str(tmp_path / "run" / "history.csv"))
    assert [int(row["epoch"]) for row in rows] == list(range(1, 8))  # one row per epoch, across the resume
    validated = [int(row["epoch"]) for row in rows if row["val_accuracy"] != ""]
    assert validated == [3, 6, 7] and results["resumed_from_epoch"] == 5
    accuracy = {int(row["epoch"]): float(row["val_accuracy"]) for row in rows if row["val_accuracy"]}
    best_epoch = max(accuracy, key=accuracy.get)
    assert results["best_epoch"] == best_epoch and results["best_val_accuracy"] == pytest.approx(accuracy[best_epoch])
    assert json.loads((tmp_path / "run" / "best.json").read_text())["epoch"] == best_epoch
    assert results["val_accuracy"] == pytest.approx(accuracy[7]) and results["validation_freq"] == 3


def test_bad_validation_freq_is_refused(tmp_path):
    from sskt_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="--validation_freq=0: must be >= 1"):
        training.train(dataclasses.replace(TrainConfig(sources=[], model_dir=str(tmp_path)), validation_freq=0))


@pytest.mark.slow
def test_every_epoch_of_a_dataset_of_unknown_length_counts_its_real_steps(digits_folder, tmp_path, monkeypatch):
    # Keras 3.15 adds a phantom step to each epoch of a dataset of unknown length (folder
    # datasets skip unreadable files), diluting the epoch's training metrics by one batch.
    models = []
    compile_model = training.loop.compile_model
    monkeypatch.setattr(
        training.loop,
        "compile_model",
        lambda model, *args, **kwargs: (models.append(model), compile_model(model, *args, **kwargs))[1],
    )
    config = TrainConfig(
        dataset=f"folder:{digits_folder}",
        image_size=16,
        sources=[],
        method="scratch",
        epochs=3,
        batch_size=64,
        lr=1e-9,
        momentum=0.0,
        weight_decay=0.0,
        lr_milestones=[],
        augment=False,
        verbose=0,
        seed=0,
        model_dir=str(tmp_path / "run"),
    )
    training.train(config)
    assert int(models[0].optimizer.iterations) == 3 * (300 // 64)
    # The epoch's reported accuracy is the mean over its real batches (weights barely move at lr 1e-9).
    rows = history.read_history(str(tmp_path / "run" / "history.csv"))
    data = training.load_data(config)
    batches, steps = training.run_data.epoch_batches(config, data)
    assert steps == 300 // 64
    target = keras.saving.load_model(str(tmp_path / "run" / "last.keras"))
    correct = [np.mean(np.argmax(target(x, training=True), axis=1) == y.numpy()) for x, y in batches.take(steps)]
    assert float(rows[0]["accuracy"]) == pytest.approx(sum(correct) / steps, abs=0.02)
