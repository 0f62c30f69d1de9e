"""Learning-rate schedule, target checkpoints, the NaN guard and history truncation."""

import os

import keras
import numpy as np
import pytest

from sskt_tf import SSKTModel, targets
from sskt_tf.errors import TrainingDivergedError
from sskt_tf.training import callbacks, history


def test_step_schedule_matches_pytorch_multisteplr():
    schedule = callbacks.step_schedule(0.1, [60, 120, 160], 0.2)
    assert [schedule(e) for e in (0, 59, 60, 119, 120, 160, 199)] == pytest.approx(
        [0.1, 0.1, 0.02, 0.02, 0.004, 0.0008, 0.0008]
    )


def test_warmup_ramps_the_first_epochs_of_the_step_schedule():
    schedule = callbacks.step_schedule(0.1, [2, 30], 0.2, warmup_epochs=4)
    # 1/5, 2/5 of 0.1; then the milestone at epoch 2 applies inside the ramp too.
    assert [schedule(e) for e in (0, 1, 2, 3, 4, 29, 30)] == pytest.approx(
        [0.02, 0.04, 0.012, 0.016, 0.02, 0.02, 0.004]
    )
    assert callbacks.step_schedule(0.1, [], 0.2, warmup_epochs=0)(0) == pytest.approx(0.1)


def test_a_warmup_with_the_plateau_schedule_is_refused():
    from sskt_tf import TrainConfig
    from sskt_tf.errors import ConfigError
    from sskt_tf.training import checks

    with pytest.raises(ConfigError, match="--lr_warmup_epochs=3 ramps up the step schedule.*--lr_schedule=plateau"):
        checks.validate(TrainConfig(lr_schedule="plateau", lr_warmup_epochs=3))
    with pytest.raises(ConfigError, match="--lr_warmup_epochs"):
        checks.validate(TrainConfig(lr_warmup_epochs=-1))


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


def test_a_history_numbered_from_0_reads_back_numbered_from_1(tmp_path):
    # Runs written before epochs were numbered from 1 everywhere (their resume and plots keep working).
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n")
    assert [row["epoch"] for row in history.read_history(str(path))] == ["1", "2", "3"]
    history.truncate_history(str(path), 2)
    assert path.read_text().splitlines() == ["epoch,loss", "1,2.0", "2,1.5"]


def test_history_truncation_keeps_the_epochs_a_backup_covers(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n1,2.0\n2,1.5\n3,1.2\n")
    history.truncate_history(str(path), 2)
    assert [row["epoch"] for row in history.read_history(str(path))] == ["1", "2"]
    history.truncate_history(str(path), 0)
    assert not path.exists() and history.read_history(str(path)) == []
