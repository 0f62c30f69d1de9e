"""Two worker processes on localhost (TF_CONFIG) train with tools/train.py to identical weights,
the same as one process trains to.

Keras 3.15.1's fit crashes with several workers unless sskt_tf.training.distribute's fix is
installed; this test fails if that crash comes back.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from helpers.in_process import run_script
from helpers.processes import REPO, run_python

import sskt_tf  # noqa: F401  (registers the custom layers of saved targets)
from sskt_tf.errors import ConfigError
from sskt_tf.training import backup, distribute, history

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_two_workers(log_dir, flags):
    """Starts tools/train.py as workers 0 and 1 of a localhost cluster; returns the processes and their log files."""
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    command = [sys.executable, "tools/train.py", *flags, "--distribution_strategy=multi_worker_mirrored"]
    processes, logs = [], []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        # One thread pool each: two TensorFlow processes share this machine's few cores, and a
        # starved worker can miss the coordination service's heartbeats.
        env = dict(
            os.environ,
            TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONPATH=REPO,
            TF_CONFIG=json.dumps(tf_config),
            TF_NUM_INTEROP_THREADS="1",
            TF_NUM_INTRAOP_THREADS="1",
        )
        # Logs go to files: an undrained pipe would block one worker and, through the
        # collectives, the other.
        logs.append(log_dir / f"worker{index}.log")
        with open(logs[-1], "w") as log:
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    return processes, logs


def _run_two_workers(log_dir, flags):
    """Runs tools/train.py as workers 0 and 1 of a localhost cluster to the end; returns their log files."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes, logs = _start_two_workers(log_dir, flags)
    try:
        for process in processes:
            process.wait(timeout=480)
    finally:
        for process in processes:
            process.kill()
    if any(process.returncode != 0 for process in processes):
        pytest.fail(
            "\n\n".join(
                f"worker {i} exit {p.returncode}:\n{log.read_text()[-3000:]}"
                for i, (p, log) in enumerate(zip(processes, logs))
            )
        )
    return logs


def _shared_flags(digits_folder, tiny_source_path):
    """Four deterministic epochs with crops and flips, momentum, weight decay, BatchNorm and a source.

    The killed-and-resumed cluster must end as the uninterrupted one, and that uninterrupted run
    is also the two-worker run that must train alike with one process and two replicas. The
    learning rate is small because rounding grows fast at larger ones: at lr 0.002, a one-thread
    run's BatchNorm offsets end 26% away from a many-thread run's; at lr 0.1, permuting the
    examples inside each batch moves weights by their own scale within 20 steps.
    """
    return [
        f"--dataset=folder:{digits_folder}",
        "--image_size=16",
        f"--sources={tiny_source_path}",
        "--epochs=4",
        "--lr=0.0001",
        "--lr_milestones=3",
        "--batch_size=32",
        "--verbose=0",
        "--deterministic",
    ]


@pytest.fixture(scope="module")
def uninterrupted_workers(tmp_path_factory, digits_folder, tiny_source_path):
    """``(model_dir, worker logs)`` of an uninterrupted two-worker run (the kill test's reference)."""
    root = tmp_path_factory.mktemp("uninterrupted_workers")
    flags = _shared_flags(digits_folder, tiny_source_path)
    logs = _run_two_workers(root, [*flags, f"--model_dir={root / 'run'}"])
    return root / "run", logs


def test_two_workers_train_to_identical_weights(uninterrupted_workers):
    model_dir, logs = uninterrupted_workers
    assert "on 2 replica(s)" in logs[0].read_text()

    chief_dir, worker_dir = model_dir, model_dir / "worker_1"
    chief_rows = history.read_history(str(chief_dir / "history.csv"))
    worker_rows = history.read_history(str(worker_dir / "history.csv"))
    assert [row["epoch"] for row in chief_rows] == ["1", "2", "3", "4"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # global metrics: the same on both
        np.testing.assert_allclose([float(r[key]) for r in worker_rows], [float(r[key]) for r in chief_rows], rtol=1e-5)
    chief = keras.saving.load_model(chief_dir / "last.keras")
    worker = keras.saving.load_model(worker_dir / "last.keras")
    for a, b in zip(chief.weights, worker.weights):  # BatchNorm moving statistics included
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=a.path)
    results = json.loads((chief_dir / "results.json").read_text())
    assert results["replicas"] == 2 and results["epochs"] == 4


def _relative_distances(path_a, path_b):
    """How far two saved models' weights are apart.

    Returns:
        ``(overall, statistics)``: ``||a - b|| / ||b||`` over all weights, and the largest such
        ratio of one BatchNorm moving mean or variance (what a different batch order moves most).
    """
    pairs = zip(keras.saving.load_model(path_a).weights, keras.saving.load_model(path_b).weights)
    pairs = [(a.numpy().ravel(), b.numpy().ravel(), b.path) for a, b in pairs]
    a_all, b_all = np.concatenate([a for a, _, _ in pairs]), np.concatenate([b for _, b, _ in pairs])
    statistics = max(np.linalg.norm(a - b) / np.linalg.norm(b) for a, b, path in pairs if "moving_" in path)
    return float(np.linalg.norm(a_all - b_all) / np.linalg.norm(b_all)), float(statistics)


def test_one_process_two_workers_and_two_replicas_train_alike(
    tmp_path, digits_folder, tiny_source_path, uninterrupted_workers
):
    """The same flags give the same global batches for 1 process, 2 workers and 2 replicas.

    The runs cannot be bit-identical: two replicas add their sums in another order, and rounding
    differences grow over four epochs. Measured: the two-worker and two-replica runs end 1.1e-4
    from one process over all weights and 3.3e-4 at the worst BatchNorm moving statistic; the same
    one process on one thread instead of the default thread pools ends 7.0e-5 and 1.6e-4 from it,
    so that much is rounding alone. A different batch order moves the moving statistics, a
    weighted average of the last batches, by far more (a moving mean by 8e-2 with other batches
    and crops).
    """
    flags = _shared_flags(digits_folder, tiny_source_path)
    single = run_script(["tools/train.py", *flags, f"--model_dir={tmp_path / 'single'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    replicas = run_python(
        [
            "tests/helpers/train_on_two_cpus.py",
            *flags,
            "--distribution_strategy=mirrored",
            f"--model_dir={tmp_path / 'replicas'}",
        ]
    )
    assert replicas.returncode == 0, replicas.stderr[-3000:]
    assert "on 2 replica(s)" in replicas.stderr

    runs = {"single": tmp_path / "single", "workers": uninterrupted_workers[0], "replicas": tmp_path / "replicas"}
    rows = {name: history.read_history(str(path / "history.csv")) for name, path in runs.items()}
    for name in ("workers", "replicas"):
        assert len(rows[name]) == 4
        for key in ("loss", "target_loss", "aux_tiny_loss", "val_loss"):
            np.testing.assert_allclose(
                [float(r[key]) for r in rows[name]], [float(r[key]) for r in rows["single"]], rtol=2e-4, err_msg=key
            )
        for key in ("accuracy", "val_accuracy"):
            np.testing.assert_allclose(
                [float(r[key]) for r in rows[name]], [float(r[key]) for r in rows["single"]], atol=0.005, err_msg=key
            )
        overall, statistics = _relative_distances(runs[name] / "last.keras", runs["single"] / "last.keras")
        assert overall < 5e-4, f"{name}: weights {overall:.2e} from one process"
        assert statistics < 1e-3, f"{name}: BatchNorm statistics {statistics:.2e} from one process"


def test_workers_killed_apart_resume_from_the_same_epoch_and_match_an_uninterrupted_run(
    tmp_path, digits_folder, tiny_source_path, uninterrupted_workers
):
    flags = _shared_flags(digits_folder, tiny_source_path)
    run = tmp_path / "killed"
    chief_backup, worker_backup = str(run / "backup"), str(run / "worker_1" / "backup")
    processes, logs = _start_two_workers(tmp_path, [*flags, f"--model_dir={run}"])
    try:
        deadline = time.time() + 300
        while backup.latest_position(worker_backup).epoch < 2:
            assert all(p.poll() is None for p in processes), logs[1].read_text()[-3000:]
            assert time.time() < deadline, "no epoch completed in time"
            time.sleep(0.05)
        processes[1].send_signal(signal.SIGKILL)  # in the middle of epoch 3
        time.sleep(1)
        processes[0].send_signal(signal.SIGKILL)  # the cluster is restarted as a whole
    finally:
        for process in processes:
            process.wait()
    # As if worker 1 had died between the two workers' writes of its newest backup.
    shutil.rmtree(backup.backup_path(worker_backup, backup.latest_position(worker_backup)))
    held = {"chief": backup.held_positions(chief_backup), "worker": backup.held_positions(worker_backup)}
    agreed = min(held["chief"][0], held["worker"][0])
    assert held["chief"][0] > agreed and not (run / "results.json").exists(), held

    logs = _run_two_workers(tmp_path / "restart", [*flags, f"--model_dir={run}"])
    for log, backup_dir in zip(logs, (chief_backup, worker_backup)):
        assert f"Resuming from the backup in {backup_dir} after epoch {agreed.epoch}." in log.read_text()
    assert f"every worker resumes from {agreed}." in logs[0].read_text()
    rows = history.read_history(str(run / "history.csv"))
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]  # every epoch exactly once
    assert json.loads((run / "results.json").read_text())["resumed_from_epoch"] == agreed.epoch

    whole = keras.saving.load_model(uninterrupted_workers[0] / "last.keras")
    for resumed_dir in (run, run / "worker_1"):
        resumed = keras.saving.load_model(resumed_dir / "last.keras")
        for a, b in zip(resumed.weights, whole.weights):  # BatchNorm statistics included
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=f"{resumed_dir}: {a.path}")


def test_strategy_names_and_bad_tf_config(monkeypatch):
    import tensorflow as tf

    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    assert isinstance(distribute.get_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    assert distribute.is_chief(distribute.get_strategy("default"))
    with pytest.raises(ConfigError, match="Unknown --distribution_strategy=horovod"):
        distribute.get_strategy("horovod")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid"):
        distribute.get_strategy("multi_worker_mirrored")
