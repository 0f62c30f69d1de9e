"""Backups of a run, at epoch ends and within epochs: each written whole or not at all, the last
two kept, the position every worker of a cluster resumes from agreed among the workers, and
SIGTERM and Ctrl-C (SIGINT) turned into a backup at the next step.

A backup directory holds one subdirectory per backup: ``epoch_<e>/`` after ``e`` whole epochs,
``epoch_<e>_step_<s>/`` after ``s`` more steps of epoch ``e``. Each holds the weights and
optimizer state and Keras' ``training_metadata.json`` (with, within an epoch, the epoch's
training metrics so far). Each is written as ``<name>.partial/`` and renamed when complete,
so a kill or a full disk in the middle of a write leaves the older backups as they were. The
newest two are kept: the workers of a cluster back up at the same steps, so when a kill lands
between two workers' writes of one backup, every worker still holds the one before.
"""

import collections
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import threading

import keras
import numpy as np
import tensorflow as tf

from sskt_tf.errors import ConfigError, Preempted
from sskt_tf.training import distribute as distribute_lib
from sskt_tf.training.callbacks import all_finite

WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "training_metadata.json"
KEPT_BACKUPS = 2
_BACKUP_DIR = re.compile(r"^epoch_(\d+)(?:_step_(\d+))?$")


class Position(collections.namedtuple("Position", ["epoch", "step"])):
    """Where training stands: ``epoch`` whole epochs done, then ``step`` steps of the next."""

    def __str__(self):
        # Epochs are counted from 1 in every message, as in history.csv and the progress bar.
        return f"step {self.step} of epoch {self.epoch + 1}" if self.step else f"the end of epoch {self.epoch}"


START = Position(0, 0)


def backup_path(backup_dir, position):
    """The directory of the backup at ``position``."""
    name = f"epoch_{position.epoch}" + (f"_step_{position.step}" if position.step else "")
    return os.path.join(backup_dir, name)


def held_positions(backup_dir):
    """The positions whose complete backup ``backup_dir`` holds, newest first.

    Args:
        backup_dir: a run's backup directory (it need not exist).

    Returns:
        A list of :class:`Position`; empty without a backup.

    Raises:
        ConfigError: a backup is damaged, or was written by an older sskt_tf.
    """
    if not os.path.isdir(backup_dir):
        return []
    if os.path.exists(os.path.join(backup_dir, METADATA_FILE)):
        raise ConfigError(
            f"The backup in {backup_dir} was written by an older sskt_tf (one file per run, not one directory per "
            "backup). Resume the run with the version that started it, or delete the backup to start it again."
        )
    positions = []
    for name in os.listdir(backup_dir):
        match = _BACKUP_DIR.match(name)
        if not match:
            continue
        position = Position(int(match.group(1)), int(match.group(2) or 0))
        saved = read_metadata(backup_dir, position)
        if (saved["epoch"], saved["batch"]) != position or not os.path.exists(
            os.path.join(backup_dir, name, WEIGHTS_FILE)
        ):
            raise ConfigError(
                f"The backup in {os.path.join(backup_dir, name)} is damaged (no weights, or the metadata of "
                f"{Position(saved['epoch'], saved['batch'])}); delete it to resume from an older backup."
            )
        positions.append(position)
    return sorted(positions, reverse=True)


def read_metadata(backup_dir, position):
    """The ``training_metadata.json`` of the backup at ``position``: ``epoch``, ``batch``, ``train_logs``.

    Raises:
        ConfigError: the file is missing or damaged.
    """
    path = os.path.join(backup_path(backup_dir, position), METADATA_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
        epoch, step = int(saved["epoch"]), int(saved.get("batch", 0))
        return {"epoch": epoch, "batch": step, "train_logs": saved.get("train_logs")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"The backup in {os.path.dirname(path)} is damaged ({error}); delete it to resume from an older "
            "backup, or delete the whole backup directory to start the run again."
        ) from error


def latest_position(backup_dir):
    """The newest backup's :class:`Position` in ``backup_dir`` (:data:`START` without one)."""
    positions = held_positions(backup_dir)
    return positions[0] if positions else START


def discard_after(backup_dir, position):
    """Deletes the backups newer than ``position`` (the run resumes from ``position``)."""
    for newer in held_positions(backup_dir):
        if newer > position:
            shutil.rmtree(backup_path(backup_dir, newer))


def agree_on_position(held_by_worker):
    """The position every worker resumes from: the newest backup that every worker holds.

    That is the oldest of the workers' newest backups, provided every worker holds it.
    Workers back up at the same steps, so that fails only when a worker lost its backups
    (a replaced machine) or holds another run's.

    Args:
        held_by_worker: ``{worker name: positions of the backups it holds}``.

    Returns:
        The :class:`Position` to resume from (:data:`START`: start the run).

    Raises:
        ConfigError: no backup is held by every worker, naming what each holds.
    """
    held_by_worker = {name: [Position(*p) for p in positions] for name, positions in held_by_worker.items()}
    newest = min((max(positions) if positions else START) for positions in held_by_worker.values())
    if newest == START:
        missing = [name for name, positions in held_by_worker.items() if not positions]
        missing = missing if len(missing) < len(held_by_worker) else []
    else:
        missing = [name for name, positions in held_by_worker.items() if newest not in positions]
    if missing:
        held = "; ".join(
            f"{name}: {', '.join(str(p) for p in sorted(positions)) or 'none'}"
            for name, positions in sorted(held_by_worker.items())
        )
        best = max(max(positions) for positions in held_by_worker.values() if positions)
        holder = next(name for name, positions in sorted(held_by_worker.items()) if best in positions)
        lacking = [name for name, positions in sorted(held_by_worker.items()) if best not in positions]
        raise ConfigError(
            f"The workers hold backups of different steps and none that all of them hold ({held}). Every worker "
            f"holds the same weights: copy {holder}'s backup directory {os.path.basename(backup_path('', best))} "
            f"into the backup directory of {', '.join(lacking)}, or delete every worker's backup to start again."
        )
    return newest


def gather_held_positions(strategy, positions):
    """Every worker's backup positions, exchanged through ``strategy``'s collectives.

    Args:
        strategy: the run's tf.distribute strategy; every worker must call this.
        positions: the positions this process's backup holds (at most :data:`KEPT_BACKUPS`).

    Returns:
        ``{worker name: positions}``, e.g. ``{"worker 0": [(5, 0), (4, 0)], "worker 1": [(4, 0), (3, 0)]}``;
        only this process outside multi-worker training.
    """
    task_type, task_id = distribute_lib.worker_id(strategy)
    if not distribute_lib.is_multi_worker(strategy):
        return {f"{task_type} {task_id}": list(positions)}
    padded = ([value for p in positions for value in p] + [-1, -1] * KEPT_BACKUPS)[: 2 * KEPT_BACKUPS]
    row = tf.constant([[int(task_type == "chief"), task_id, *padded]], tf.int64)
    rows = strategy.gather(strategy.experimental_distribute_values_from_function(lambda _: row), axis=0)
    held = {}
    for is_chief, index, *saved in np.asarray(rows):  # one row per replica: several per worker with GPUs
        pairs = zip(saved[0::2], saved[1::2])
        held[f"{'chief' if is_chief else 'worker'} {index}"] = [Position(int(e), int(s)) for e, s in pairs if e >= 0]
    return held


def combine_epoch_logs(first_steps, first_logs, later_steps, later_logs):
    """The training metrics of a whole epoch from those of its first steps and of the rest.

    Training metrics are means over equal-sized batches, so the epoch's value is the
    step-weighted mean of the two parts'.

    Args:
        first_steps: steps of the first part (a backup's).
        first_logs: ``{metric: value}`` over the first part.
        later_steps: steps of the rest.
        later_logs: ``{metric: value}`` over the rest; other keys (``val_*``,
            ``learning_rate``) are kept as they are.

    Returns:
        A new dict: ``later_logs`` with the metrics of ``first_logs`` combined.
    """
    combined = dict(later_logs)
    for name, value in first_logs.items():
        if name in combined:
            combined[name] = (first_steps * value + later_steps * float(combined[name])) / (first_steps + later_steps)
    return combined


# The signals that ask a run to stop cleanly: SIGTERM (cloud preemption, kill, a cluster
# manager) and SIGINT (Ctrl-C).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_signals_request_stop():
    """Within this block SIGTERM and SIGINT (Ctrl-C) only ask the run to stop.

    The run then backs up at its next step and stops (:class:`FiniteBackupAndRestore`);
    a second Ctrl-C stops at once (``KeyboardInterrupt``), losing what the last backup
    does not hold.

    Yields:
        A function of no arguments: the name of the first stop signal that arrived
        (``"SIGTERM"`` or ``"SIGINT"``), or None. Outside the main thread (where Python
        cannot handle signals) it always answers None.
    """
    received = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def request_stop(signum, frame):
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not received:
            received.append(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, request_stop) for signum in STOP_SIGNALS}
    try:
        yield lambda: received[0] if received else None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class ResumedEpochLogs(keras.callbacks.Callback):
    """Makes the logs of an epoch resumed in its middle those of the whole epoch.

    ``fit`` resets the metrics when the resumed epoch starts, so its logs cover only the
    steps after the backup; this callback combines them with the metrics the backup saved
    (:func:`combine_epoch_logs`). Put it first among the callbacks, so that
    ``history.csv``, TensorBoard and the checkpoints see whole-epoch values.

    Args:
        epoch: the resumed epoch (0-based).
        first_steps: steps of it the backup had done.
        first_logs: their training metrics.
    """

    def __init__(self, epoch, first_steps, first_logs):
        super().__init__()
        self.epoch, self.first_steps, self.first_logs = epoch, first_steps, dict(first_logs or {})
        self.steps_done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch and logs is not None and self.first_steps:
            logs.update(combine_epoch_logs(self.first_steps, self.first_logs, self.steps_done, logs))


class FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` that backs up within epochs too, stops cleanly on
    SIGTERM and SIGINT, never backs up a diverged epoch, and never damages a backup it cannot finish.

    Saves weights, optimizer state and the position after every epoch (unless the loss or
    the weights are non-finite, so a restart resumes from the last good epoch), every
    ``every_steps`` steps, and at the next step once ``stop_requested()`` is true, in the
    layout this module describes; then it raises :class:`sskt_tf.errors.Preempted`. It
    restores the backup at ``restore`` at the start of the first ``fit``. A backup that
    cannot be written (a full or read-only disk) is logged with the backup that remains
    usable, and training goes on. Put it last among the callbacks: a backup is the commit
    point of an epoch, after the history row and the checkpoints. The caller deletes the
    backups once the run's results are written (:meth:`delete`).

    Within-epoch backups need batches that depend only on the position (epoch-keyed
    batches); pass ``steps_per_epoch=None`` otherwise: a stop signal then stops the run without
    a new backup, and the rerun resumes from the last whole epoch.

    Args:
        backup_dir: where the backups live (one directory per worker).
        restore: the :class:`Position` to restore (:data:`START`: none); see
            :func:`agree_on_position`.
        every_steps: back up every this many steps, counted from the start of the run
            (0: at epoch ends only).
        steps_per_epoch: steps of one epoch; None: no within-epoch backups.
        stop_requested: a function of no arguments, true once the run should stop
            (:func:`stop_signals_request_stop`; what it returns names the signal); None: never.
        resumed_epoch_logs: the :class:`ResumedEpochLogs` of a run resumed within an epoch,
            whose saved metrics a new within-epoch backup of that epoch includes.
    """

    def __init__(
        self,
        backup_dir,
        restore=START,
        every_steps=0,
        steps_per_epoch=None,
        stop_requested=None,
        resumed_epoch_logs=None,
    ):
        super().__init__(backup_dir, delete_checkpoint=False)
        self.diverged = False
        self.restore = Position(*restore)
        self.every_steps = every_steps if steps_per_epoch else 0
        self.steps_per_epoch = steps_per_epoch
        self.stop_requested = stop_requested or (lambda: False)
        self.resumed_epoch_logs = resumed_epoch_logs
        self._to_restore = self.restore != START
        self._epoch, self._first_step = 0, 0
        restored = backup_path(backup_dir, self.restore)
        self._weights_path = os.path.join(restored, WEIGHTS_FILE)
        self._training_metadata_path = os.path.join(restored, METADATA_FILE)

    def on_train_begin(self, logs=None):
        if not self._to_restore:
            return
        self._to_restore = False  # a run resumed within an epoch calls fit twice; restore once
        try:
            self._load_model()
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(
                f"Could not restore the backup in {backup_path(self.backup_dir, self.restore)} ({error}). It may "
                "be damaged or come from another model: delete it to resume from an older backup or start again."
            ) from error

    def on_train_end(self, logs=None):
        # Keras' restore leaves the restored epoch on the model, where the next fit would read it
        # instead of its own initial_epoch (a run resumed within an epoch calls fit twice). The
        # backups stay (delete_checkpoint=False) until the run's results are written (delete()).
        super().on_train_end(logs)
        self.model._initial_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._first_step = self.restore.step if epoch == self.restore.epoch else 0

    def on_train_batch_end(self, batch, logs=None):
        stop = self.stop_requested()
        if not self.steps_per_epoch:  # no within-epoch backups: stop now, resume from the last epoch end
            if stop:
                self._stop(None, steps_done=batch + 1)
            return
        step = self._first_step + batch + 1  # steps of this epoch done
        if step >= self.steps_per_epoch:
            return  # an epoch's last step is backed up (and a stop honoured) at its end
        if stop or (self.every_steps and (self._epoch * self.steps_per_epoch + step) % self.every_steps == 0):
            train_logs = {name: float(value) for name, value in (logs or {}).items()}
            resumed = self.resumed_epoch_logs
            if resumed is not None and resumed.first_steps and self._epoch == resumed.epoch:
                train_logs = combine_epoch_logs(resumed.first_steps, resumed.first_logs, batch + 1, train_logs)
            saved = self._save(Position(self._epoch, step), train_logs)
            if stop:
                self._stop(saved)

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if (loss is not None and not math.isfinite(float(loss))) or not all_finite(self.model.weights):
            self.diverged = True
            return
        saved = self._save(Position(epoch + 1, 0), None)
        if self.stop_requested():
            self._stop(saved)

    def _stop(self, saved, steps_done=None):
        """Raises :class:`Preempted` with where the run stopped and what the rerun redoes.

        Args:
            saved: the backup just written at the stop, or None (none could be).
            steps_done: without a backup, the steps of the current epoch done so far.
        """
        signal_name = self.stop_requested() or "request"
        if saved is not None:
            raise Preempted(
                f"Stopped on {signal_name}; backed up at {saved} in {self.backup_dir}. Run the same command to "
                "resume there (no step is redone)."
            )
        kept = held_positions(self.backup_dir)
        where = f"the backup at {kept[0]}" if kept else "the start (no backup)"
        redone = ""
        if steps_done and (not kept or kept[0] == Position(self._epoch, 0)):
            redone = f"; it redoes the {steps_done} step(s) of epoch {self._epoch + 1} done so far"
        raise Preempted(
            f"Stopped on {signal_name} in epoch {self._epoch + 1}. Run the same command to resume from {where}{redone}."
        )

    def _save(self, position, train_logs):
        """Writes the backup at ``position``; returns it, or None when the write failed."""
        final = backup_path(self.backup_dir, position)
        partial = f"{final}.partial"
        try:
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            self.model.save_weights(os.path.join(partial, WEIGHTS_FILE))
            with open(os.path.join(partial, METADATA_FILE), "w") as f:
                json.dump({"epoch": position.epoch, "batch": position.step, "train_logs": train_logs}, f)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(partial, final)
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)
            kept = [p for p in held_positions(self.backup_dir) if p < position]
            logging.error(
                "Could not write the backup at %s in %s (%s). %s Training goes on and tries again at the next backup.",
                position,
                self.backup_dir,
                error,
                f"The backup at {kept[0]} is intact and a restart resumes from it."
                if kept
                else "There is no older backup: a restart would start the run again.",
            )
            return None
        for old in held_positions(self.backup_dir)[KEPT_BACKUPS:]:
            shutil.rmtree(backup_path(self.backup_dir, old))
        return position

    def delete(self):
        """Removes the backups (after the run's results are safely written)."""
        shutil.rmtree(self.backup_dir, ignore_errors=True)
