"""Learning-rate schedule, target checkpoints and the NaN guard."""

import os

import keras
import numpy as np
import pytest

from sskt_tf import SSKTModel, targets
from sskt_tf.errors import ConfigError, TrainingDivergedError
from sskt_tf.training import callbacks, history


def test_step_schedule_matches_pytorch_multisteplr():
    schedule = callbacks.step_schedule(0.1, [60, 120, 160], 0.2)
    assert [schedule(e) for e in (0, 59, 60, 119, 120, 160, 199)] == pytest.approx(
        [0.1, 0.1, 0.02, 0.02, 0.004, 0.0008, 0.0008]
    )


def test_nan_loss_stops_training_and_keeps_the_last_good_target(tmp_path, digits):
    train_x, train_y, _, _ = digits
    x, y = train_x[:32].astype("float32"), train_y[:32]
    model = SSKTModel(targets.get("resnet20", 10, image_size=16), [])
    model.compile("sgd", metrics=["accuracy"])
    guard, saver = callbacks.StopOnNonFiniteLoss(), callbacks.SaveTarget(str(tmp_path))
    model.fit(x, y, batch_size=16, epochs=1, validation_data=(x, y), callbacks=[guard, saver], verbose=0)
    good = [w.numpy().copy() for w in model.target.weights]
    assert os.path.exists(tmp_path / "last.keras") and os.path.exists(tmp_path / "best.keras")
    bad_x = x.copy()
    bad_x[20] = np.nan  # second batch
    model.fit(bad_x, y, batch_size=16, epochs=3, shuffle=False, callbacks=[guard, saver], verbose=0)
    assert guard.failure["epoch"] == 1 and guard.failure["batch"] == 2
    with pytest.raises(TrainingDivergedError, match="non-finite at epoch 1, batch 2"):
        guard.raise_if_failed(str(tmp_path))
    last = keras.saving.load_model(tmp_path / "last.keras")
    for saved, weight in zip(last.weights, good):
        np.testing.assert_array_equal(saved.numpy(), weight)


@pytest.mark.slow
def test_backup_skips_diverged_epochs_and_is_kept_for_a_restart(tmp_path, digits):
    train_x, train_y, _, _ = digits
    x, y = train_x[:32].astype("float32"), train_y[:32]
    model = SSKTModel(targets.get("resnet20", 10, image_size=16), [])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9))
    backup_dir = str(tmp_path / "backup")
    first = callbacks.FiniteBackupAndRestore(backup_dir)
    first.delete_checkpoint = False  # as if the process had been killed after two epochs
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[first], verbose=0)
    assert callbacks.FiniteBackupAndRestore.saved_epoch(backup_dir) == 2
    good = [w.numpy().copy() for w in model.weights]
    bad_x = x.copy()
    bad_x[3] = np.nan
    # The restart resumes at epoch 2; its third epoch diverges: the backup stays at 2.
    diverging = callbacks.FiniteBackupAndRestore(backup_dir)
    model.fit(
        bad_x,
        y,
        batch_size=16,
        epochs=3,
        shuffle=False,
        callbacks=[diverging, callbacks.StopOnNonFiniteLoss()],
        verbose=0,
    )
    assert diverging.diverged and callbacks.FiniteBackupAndRestore.saved_epoch(backup_dir) == 2
    # A fresh model restores the last good epoch's weights and optimizer state.
    restored = SSKTModel(targets.get("resnet20", 10, image_size=16), [])
    restored.compile(keras.optimizers.SGD(0.1, momentum=0.9))
    restoring = callbacks.FiniteBackupAndRestore(backup_dir)
    restored.fit(x, y, batch_size=16, epochs=2, callbacks=[restoring], verbose=0)
    assert restored._initial_epoch == 2  # nothing left to train: the weights are the backup's
    for saved, weight in zip(restored.weights, good):
        np.testing.assert_array_equal(saved.numpy(), weight)
    assert sorted(os.listdir(backup_dir)) == ["latest.weights.h5", "training_metadata.json"]  # no partial files
    restoring.delete()
    assert not os.path.exists(backup_dir)


def test_damaged_backups_are_clear_errors(tmp_path):
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / "training_metadata.json").write_text("")  # killed while writing (pre-rename)
    with pytest.raises(ConfigError, match="is damaged.*delete it"):
        callbacks.FiniteBackupAndRestore.saved_epoch(str(backup_dir))
    (backup_dir / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    (backup_dir / "latest.weights.h5").write_text("not hdf5")
    model = SSKTModel(targets.get("resnet20", 10, image_size=16), [])
    model.compile("sgd")
    with pytest.raises(ConfigError, match="Could not restore the backup"):
        model.fit(
            np.zeros((4, 16, 16, 3)),
            np.zeros(4),
            epochs=2,
            verbose=0,
            callbacks=[callbacks.FiniteBackupAndRestore(str(backup_dir))],
        )


def test_history_truncation_keeps_the_epochs_a_backup_covers(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n")
    history.truncate_history(str(path), 2)
    assert [row["epoch"] for row in history.read_history(str(path))] == ["0", "1"]
    history.truncate_history(str(path), 0)
    assert not path.exists() and history.read_history(str(path)) == []
