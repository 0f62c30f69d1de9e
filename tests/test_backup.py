"""Per-epoch backups: diverged epochs skipped, writes that fail leave the older backup usable,
damaged backups refused, and the epoch that workers holding different backups agree on."""

import errno
import json
import logging
import os
import signal

import keras
import numpy as np
import pytest

from sskt_tf import SSKTModel, targets
from sskt_tf.errors import ConfigError
from sskt_tf.training import backup, callbacks


def _model():
    model = SSKTModel(targets.get("resnet20", 10, image_size=16), [])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9))
    return model


@pytest.mark.slow
def test_backup_skips_diverged_epochs_keeps_two_and_restores_the_chosen_one(tmp_path, digits):
    train_x, train_y, _, _ = digits
    x, y = train_x[:32].astype("float32"), train_y[:32]
    backup_dir = str(tmp_path / "backup")
    model = _model()
    weights_after = {}

    class Remember(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_after[epoch + 1] = [w.numpy().copy() for w in model.weights]

    first = [Remember(), backup.FiniteBackupAndRestore(backup_dir)]
    model.fit(x, y, batch_size=16, epochs=3, callbacks=first, verbose=0)
    assert backup.held_positions(backup_dir) == [(3, 0), (2, 0)]  # the newest two, no partial directories
    assert sorted(os.listdir(backup_dir)) == ["epoch_2", "epoch_3"]

    # The restart resumes at epoch 3; its fourth epoch diverges: the backups stay as they were.
    bad_x = x.copy()
    bad_x[3] = np.nan
    diverging = backup.FiniteBackupAndRestore(backup_dir, restore=(3, 0))
    model.fit(bad_x, y, batch_size=16, epochs=4, shuffle=False, callbacks=[diverging], verbose=0)
    assert diverging.diverged and backup.held_positions(backup_dir) == [(3, 0), (2, 0)]

    # A fresh model restores the chosen backup's weights and optimizer state.
    for epoch in (3, 2):
        restored = _model()
        restoring = backup.FiniteBackupAndRestore(backup_dir, restore=(epoch, 0))
        restored.fit(x, y, batch_size=16, epochs=epoch, callbacks=[restoring], verbose=0)
        # Nothing left to train: the optimizer state (2 steps an epoch) and the weights are the backup's.
        assert int(restored.optimizer.iterations) == 2 * epoch
        for saved, weight in zip(restored.weights, weights_after[epoch]):
            np.testing.assert_array_equal(saved.numpy(), weight)
    restoring.delete()
    assert not os.path.exists(backup_dir)


def test_a_backup_that_cannot_be_written_leaves_the_older_one_and_says_so(tmp_path, digits, monkeypatch, caplog):
    train_x, train_y, _, _ = digits
    x, y = train_x[:16].astype("float32"), train_y[:16]
    backup_dir = str(tmp_path / "backup")
    model = _model()
    model.fit(x, y, batch_size=16, epochs=1, callbacks=[backup.FiniteBackupAndRestore(backup_dir)], verbose=0)
    saved = open(os.path.join(backup_dir, "epoch_1", backup.WEIGHTS_FILE), "rb").read()

    def disk_full(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(model, "save_weights", disk_full)
    with caplog.at_level(logging.ERROR):
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=2,
            callbacks=[backup.FiniteBackupAndRestore(backup_dir, restore=(1, 0))],
            verbose=0,
        )
    assert "Could not write the backup at the end of epoch 2" in caplog.text
    assert "No space left on device" in caplog.text and "The backup at the end of epoch 1 is intact" in caplog.text
    assert sorted(os.listdir(backup_dir)) == ["epoch_1"]  # the half-written one is gone
    assert open(os.path.join(backup_dir, "epoch_1", backup.WEIGHTS_FILE), "rb").read() == saved
    assert backup.held_positions(backup_dir) == [(1, 0)]


def test_damaged_or_old_backups_are_clear_errors(tmp_path):
    backup_dir = tmp_path / "backup"
    (backup_dir / "epoch_2").mkdir(parents=True)
    (backup_dir / "epoch_2" / backup.METADATA_FILE).write_text("")  # killed while writing
    with pytest.raises(ConfigError, match="epoch_2 is damaged.*delete it"):
        backup.held_positions(str(backup_dir))
    (backup_dir / "epoch_2" / backup.METADATA_FILE).write_text(json.dumps({"epoch": 2, "batch": 0}))
    with pytest.raises(ConfigError, match="epoch_2 is damaged \\(no weights"):
        backup.held_positions(str(backup_dir))
    (backup_dir / "epoch_2" / backup.WEIGHTS_FILE).write_text("not hdf5")
    (backup_dir / "epoch_3.partial").mkdir()  # an unfinished write is not a backup
    assert backup.held_positions(str(backup_dir)) == [(2, 0)] and backup.latest_position(str(backup_dir)) == (2, 0)
    model = _model()
    with pytest.raises(ConfigError, match="Could not restore the backup in .*epoch_2"):
        model.fit(
            np.zeros((4, 16, 16, 3)),
            np.zeros(4),
            epochs=3,
            verbose=0,
            callbacks=[backup.FiniteBackupAndRestore(str(backup_dir), restore=(2, 0))],
        )
    (backup_dir / backup.METADATA_FILE).write_text(json.dumps({"epoch": 1, "batch": 0}))
    with pytest.raises(ConfigError, match="written by an older sskt_tf"):
        backup.held_positions(str(backup_dir))


@pytest.mark.parametrize(
    "held, expected",
    [
        ({"worker 0": [], "worker 1": []}, (0, 0)),
        ({"worker 0": [(5, 0), (4, 0)], "worker 1": [(5, 0), (4, 0)]}, (5, 0)),
        ({"worker 0": [(5, 0), (4, 0)], "worker 1": [(4, 0), (3, 0)]}, (4, 0)),  # killed between two writes
        ({"worker 0": [(4, 20), (4, 10)], "worker 1": [(4, 10), (4, 0)]}, (4, 10)),  # within an epoch
        ({"chief 0": [(1, 0)], "worker 0": [(2, 0), (1, 0)], "worker 1": [(1, 0)]}, (1, 0)),
    ],
)
def test_workers_agree_on_the_newest_backup_they_all_hold(held, expected):
    assert backup.agree_on_position(held) == expected


@pytest.mark.parametrize(
    "held, named",
    [
        # A replaced machine; another run's backup.
        (
            {"worker 0": [(5, 0), (4, 0)], "worker 1": []},
            "worker 0: the end of epoch 4, the end of epoch 5; worker 1: none",
        ),
        (
            {"worker 0": [(5, 0), (4, 0)], "worker 1": [(2, 30)]},
            "worker 0: the end of epoch 4, the end of epoch 5; worker 1: step 30 of epoch 3",
        ),  # noqa: E501
    ],
)
def test_workers_without_a_common_backup_stop_with_what_each_holds(held, named):
    with pytest.raises(ConfigError, match=f"none that all of them hold \\({named}\\).*copy worker 0's backup") as error:
        backup.agree_on_position(held)
    assert "epoch_5 into the backup directory of worker 1" in str(error.value)


def test_resuming_deletes_the_backups_newer_than_the_agreed_position(tmp_path):
    backup_dir = str(tmp_path / "backup")
    for epoch, step in ((4, 0), (4, 10), (5, 0)):
        path = backup.backup_path(backup_dir, backup.Position(epoch, step))
        os.makedirs(path)
        with open(os.path.join(path, backup.METADATA_FILE), "w") as f:
            json.dump({"epoch": epoch, "batch": step}, f)
        open(os.path.join(path, backup.WEIGHTS_FILE), "w").close()
    assert sorted(os.listdir(backup_dir)) == ["epoch_4", "epoch_4_step_10", "epoch_5"]
    backup.discard_after(backup_dir, backup.Position(4, 10))
    assert backup.held_positions(backup_dir) == [(4, 10), (4, 0)]


def test_a_resumed_epoch_reports_whole_epoch_means():
    # 10 steps before the backup at loss 2.0, 30 after at loss 1.0: the epoch's mean is 1.25.
    later = {"loss": 1.0, "accuracy": 0.9, "val_loss": 3.0}
    logs = backup.combine_epoch_logs(10, {"loss": 2.0, "accuracy": 0.5}, 30, later)
    assert logs == pytest.approx({"loss": 1.25, "accuracy": 0.8, "val_loss": 3.0})


def test_all_finite():
    assert callbacks.all_finite([np.ones(3), keras.Variable(np.zeros(2))])
    assert not callbacks.all_finite([np.ones(3), np.array([1.0, np.nan])])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_only_asks_the_run_to_stop_and_a_second_ctrl_c_stops_at_once(signum):
    previous = signal.getsignal(signum)
    with backup.stop_signals_request_stop() as stop_requested:
        assert stop_requested() is None
        os.kill(os.getpid(), signum)
        assert stop_requested() == signal.Signals(signum).name
        os.kill(os.getpid(), signal.SIGTERM)  # later signals change nothing ...
        assert stop_requested() == signal.Signals(signum).name
        with pytest.raises(KeyboardInterrupt):  # ... but Ctrl-C after a stop request stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signum) is previous  # the handlers are restored


def test_ctrl_c_outside_training_is_one_line_and_exit_130(capsys):
    from sskt_tf.cli.tool import EXIT_INTERRUPTED, run_tool

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        run_tool(["tool"], interrupted)
    assert exit_.value.code == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err.startswith("stopped: Interrupted (Ctrl-C).")
