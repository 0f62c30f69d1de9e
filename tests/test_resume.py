"""A run killed with SIGKILL, or stopped with SIGTERM, resumes from its last backup (at an epoch
end or within an epoch), and ends with the weights and history of a run that was never
interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers.in_process import run_script
from helpers.processes import REPO

from sskt_tf.errors import ConfigError
from sskt_tf.training import backup, history

EPOCHS = 6
# A warmup over 4 epochs and a decay at epoch 3: a resumed run must continue both schedules.
SCHEDULE = ("--lr_warmup_epochs=4", "--lr_milestones=3")


def _train_args(model_dir, digits_folder, tiny_source_path, *extra):
    return [
        "tools/train.py",
        f"--dataset=folder:{digits_folder}",
        "--image_size=16",
        f"--sources={tiny_source_path}",
        f"--epochs={EPOCHS}",
        *SCHEDULE,
        "--batch_size=32",
        "--verbose=0",
        "--deterministic",
        f"--model_dir={model_dir}",
        *extra,
    ]


def _start(args):
    """Starts ``python args...`` as a real process (the one the test kills)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    command = [sys.executable, *args]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, digits_folder, tiny_source_path):
    """The run both tests' interrupted runs must end equal to, trained once without interruption.

    Step backups (``--backup_every_steps``) change nothing in training, so one run serves both.
    """
    model_dir = tmp_path_factory.mktemp("resume") / "uninterrupted"
    result = run_script(_train_args(model_dir, digits_folder, tiny_source_path))
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


def _assert_same_last_weights(run_a, run_b):
    """The two runs' ``last.keras`` hold the same weights, BatchNorm statistics included, within 1e-6."""
    model_a = keras.saving.load_model(run_a / "last.keras")
    model_b = keras.saving.load_model(run_b / "last.keras")
    for a, b in zip(model_a.weights, model_b.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=a.path)


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_and_logs_every_epoch_once(
    tmp_path, digits_folder, tiny_source_path, uninterrupted
):
    model_dir = tmp_path / "run"
    args = _train_args(model_dir, digits_folder, tiny_source_path)
    backup_dir = str(model_dir / "backup")
    process = _start(args)
    try:
        _wait_for_backup(process, backup_dir, lambda p: p.epoch >= 2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    killed_at = backup.latest_position(backup_dir).epoch
    assert 2 <= killed_at < EPOCHS and not (model_dir / "results.json").exists()

    resumed = run_script(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from the backup in {backup_dir} after epoch {killed_at}" in resumed.stderr
    rows = history.read_history(str(model_dir / "history.csv"))
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))  # every epoch exactly once
    # The learning-rate schedule continued where it was: the warmup's 1/5, 2/5, 3/5 and 4/5,
    # and x0.2 from epoch 3 on.
    warmup = [0.2, 0.4, 0.6, 0.8] + [1.0] * (EPOCHS - 4)
    expected = [0.1 * w * (0.2 if epoch >= 3 else 1.0) for epoch, w in enumerate(warmup)]
    assert [float(row["learning_rate"]) for row in rows] == pytest.approx(expected)
    results = json.loads((model_dir / "results.json").read_text())
    assert results["epochs"] == EPOCHS and results["resumed_from_epoch"] == killed_at
    assert not os.path.exists(backup_dir)  # removed once the run finished

    again = run_script(args)
    assert again.returncode == 2 and "holds a finished run" in again.stderr

    # The resumed run trained on the batches, crops and learning rates of an uninterrupted one.
    _assert_same_last_weights(model_dir, uninterrupted)


def _wait_for_backup(process, backup_dir, reached):
    """Polls until the newest backup's position satisfies ``reached``; returns it."""
    deadline = time.time() + 300
    while True:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no backup in time"
        try:
            position = backup.latest_position(backup_dir)
        except ConfigError:  # a backup being pruned while we look
            continue
        if reached(position):
            return position
        time.sleep(0.02)


@pytest.mark.slow
def test_step_backups_and_sigterm_resume_within_epochs_as_if_never_stopped(
    tmp_path, digits_folder, tiny_source_path, uninterrupted
):
    model_dir = tmp_path / "run"
    args = _train_args(model_dir, digits_folder, tiny_source_path, "--backup_every_steps=10")
    backup_dir = str(model_dir / "backup")

    # SIGKILL after a backup within epoch 2: the rerun starts at that step.
    process = _start(args)
    try:
        killed_at = _wait_for_backup(process, backup_dir, lambda p: p.epoch == 1 and p.step > 0)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()

    # SIGTERM within epoch 3 of the rerun: a backup at the next step, exit code 75.
    process = _start(args)
    try:
        _wait_for_backup(process, backup_dir, lambda p: p.epoch == 2 and p.step > 0)
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=120)[1].decode()
    finally:
        process.kill()
    assert process.returncode == 75, stderr[-3000:]
    assert f"Resuming from the backup in {backup_dir} after epoch 1 and {killed_at.step} steps of the next" in stderr
    stopped_at = backup.latest_position(backup_dir)
    assert f"stopped: Stopped on SIGTERM; backed up at {stopped_at} in {backup_dir}" in stderr
    assert stopped_at.epoch == 2 and stopped_at.step > 0
    assert len(backup.held_positions(backup_dir)) == 2  # the newest two

    resumed = run_script(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert (results["resumed_from_epoch"], results["resumed_from_step"]) == stopped_at
    steps_per_epoch = results["train_examples"] // 32
    assert (killed_at.epoch * steps_per_epoch + killed_at.step) % 10 == 0  # every 10 steps of the run
    assert stopped_at.step < steps_per_epoch

    rows = history.read_history(str(model_dir / "history.csv"))
    whole_rows = history.read_history(str(uninterrupted / "history.csv"))
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))  # every epoch exactly once
    for key in ("loss", "accuracy", "target_loss", "aux_tiny_loss", "learning_rate", "val_loss", "val_accuracy"):
        # The resumed epochs' training metrics cover the whole epoch, both of its parts.
        np.testing.assert_allclose(
            [float(r[key]) for r in rows], [float(r[key]) for r in whole_rows], rtol=1e-5, err_msg=key
        )
    _assert_same_last_weights(model_dir, uninterrupted)


@pytest.mark.slow
def test_ctrl_c_mid_epoch_backs_up_says_so_and_the_rerun_ends_as_if_never_stopped(
    tmp_path, digits_folder, tiny_source_path, uninterrupted
):
    model_dir = tmp_path / "run"
    args = _train_args(model_dir, digits_folder, tiny_source_path)
    backup_dir = str(model_dir / "backup")
    process = _start(args)
    try:
        _wait_for_backup(process, backup_dir, lambda p: p.epoch >= 1)
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=120)[1].decode()
    finally:
        process.kill()
    assert process.returncode == 75, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    stopped_at = backup.latest_position(backup_dir)
    stopped = [line for line in stderr.splitlines() if line.startswith("stopped:")]
    assert stopped == [
        f"stopped: Stopped on SIGINT; backed up at {stopped_at} in {backup_dir}. Run the same command to resume "
        "there (no step is redone)."
    ]

    resumed = run_script(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert (results["resumed_from_epoch"], results["resumed_from_step"]) == stopped_at
    rows = history.read_history(str(model_dir / "history.csv"))
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    _assert_same_last_weights(model_dir, uninterrupted)


def test_a_backup_of_other_networks_is_refused_before_training(tmp_path):
    from sskt_tf import training
    from sskt_tf.training.config import TrainConfig
    from sskt_tf.training.flags import to_flagfile

    run = tmp_path / "run"
    (run / "backup" / "epoch_3").mkdir(parents=True)
    (run / "backup" / "epoch_3" / backup.METADATA_FILE).write_text('{"epoch": 3, "batch": 0}')
    (run / "backup" / "epoch_3" / backup.WEIGHTS_FILE).write_text("")
    (run / "flags.txt").write_text(to_flagfile(TrainConfig(target="resnet20", model_dir=str(run))))
    (run / "history.csv").write_text("epoch,loss\n1,2.0\n2,1.5\n3,1.2\n4,1.1\n")
    with pytest.raises(ConfigError, match="backup of a run with other --target"):
        training.loop._prepare_resume(TrainConfig(target="resnet32", model_dir=str(run)), str(run), str(run / "backup"))
    # Online sources instead of cached ones, or a loss-scaled optimizer instead of plain SGD.
    for changed in (dict(soft_label_cache="caches/x"), dict(mixed_precision="mixed_float16")):
        with pytest.raises(ConfigError, match=f"backup of a run with other --{next(iter(changed))}"):
            training.loop._prepare_resume(
                TrainConfig(target="resnet20", model_dir=str(run), **changed), str(run), str(run / "backup")
            )
    resumed = training.loop._prepare_resume(
        TrainConfig(target="resnet20", model_dir=str(run)), str(run), str(run / "backup")
    )
    assert resumed == (3, 0) and [r["epoch"] for r in history.read_history(str(run / "history.csv"))] == ["1", "2", "3"]
