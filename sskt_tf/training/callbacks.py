"""Keras callbacks used by the training loop."""

import json
import logging
import math
import os

import keras
import numpy as np
import tensorflow as tf

from sskt_tf.errors import TrainingDivergedError
from sskt_tf.training import history as history_lib
from sskt_tf.training.metrics import mean_average_precision

LR_SCHEDULES = ("step", "plateau")


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` with epochs numbered from 1, as in ``history.csv`` and the logs.

    Keras writes an epoch's summaries at step ``epoch`` (0-based); here epoch 1's values are at step 1.
    Takes the same arguments as ``keras.callbacks.TensorBoard``.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def learning_rate_callback(config, history_path, resume_epoch):
    """The callback of ``--lr_schedule``: milestones (``step``) or plateaus of ``val_loss`` (``plateau``).

    Args:
        config: a :class:`TrainConfig`.
        history_path: the run's ``history.csv`` (a resumed plateau schedule replays it).
        resume_epoch: epochs already trained.

    Returns:
        A Keras callback that sets the optimizer's learning rate.
    """
    if config.lr_schedule == "plateau":
        return PlateauSchedule(history_path, resume_epoch, factor=config.lr_decay, patience=config.lr_patience)
    return keras.callbacks.LearningRateScheduler(
        step_schedule(config.lr, config.lr_milestones, config.lr_decay, config.lr_warmup_epochs)
    )


def step_schedule(base_lr, milestones, decay, warmup_epochs=0):
    """Step learning-rate schedule per epoch, as PyTorch's ``MultiStepLR``, with an optional warmup.

    The warmup is per epoch, so a resumed run (which restarts at an epoch) needs no state to
    continue it. It is for deep networks that diverge in their first steps at the full rate
    (He et al. trained their CIFAR ResNet-110 at 0.01 for its first 400 steps for this reason).

    Args:
        base_lr: learning rate of epoch 0 without warmup.
        milestones: epochs (0-based) from which one more ``decay`` applies.
        decay: multiplicative factor per milestone.
        warmup_epochs: N; epoch ``e < N`` trains at ``(e + 1) / (N + 1)`` of its rate
            (N = 4: 0.2, 0.4, 0.6 and 0.8 of it). 0 = no warmup.

    Returns:
        A function ``epoch -> learning rate``.
    """
    milestones = sorted(milestones)

    def schedule(epoch, lr=None):
        warmup = (epoch + 1) / (warmup_epochs + 1) if epoch < warmup_epochs else 1.0
        return base_lr * warmup * decay ** sum(epoch >= m for m in milestones)

    return schedule


class PlateauSchedule(keras.callbacks.Callback):
    """Learning rate times ``factor`` when ``val_loss`` stops improving, resumable: ``--lr_schedule=plateau``.

    The rule of ``keras.callbacks.ReduceLROnPlateau(monitor, factor, patience,
    mode="min", min_delta=1e-4, cooldown=0)``: an epoch improves when its value is
    below the best so far by more than ``min_delta``; after ``patience`` epochs
    without improvement the rate is multiplied by ``factor`` and the count starts
    again. Epochs that do not validate neither count nor reset it. Keras keeps
    that state in memory only; here a resumed run replays the monitored values
    of the epochs already in ``history.csv``, so the schedule continues where it
    stopped (the rate itself comes back with the optimizer state).

    Args:
        history_path: the run's ``history.csv``.
        resume_epoch: epochs already trained (0 for a new run).
        factor: rate factor at each plateau (the original video code: 0.1).
        patience: epochs without improvement before a reduction (10).
        monitor: the validation loss to watch (lower is better).
        min_delta: the smallest decrease that counts as an improvement.
    """

    def __init__(self, history_path, resume_epoch=0, factor=0.1, patience=10, monitor="val_loss", min_delta=1e-4):
        super().__init__()
        self.history_path = history_path
        self.resume_epoch = int(resume_epoch)
        self.factor, self.patience, self.monitor, self.min_delta = factor, patience, monitor, min_delta
        self.best, self.wait = math.inf, 0

    def on_train_begin(self, logs=None):
        self.best, self.wait = math.inf, 0
        for row in history_lib.read_history(self.history_path)[: self.resume_epoch]:
            if row.get(self.monitor, "") != "":
                self.advance(float(row[self.monitor]))

    def advance(self, current):
        """Counts one validated epoch; True when the learning rate is due for a reduction."""
        if current < self.best - self.min_delta:
            self.best, self.wait = current, 0
            return False
        self.wait += 1
        if self.wait < self.patience:
            return False
        self.wait = 0
        return True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["learning_rate"] = rate  # the rate this epoch trained with
        current = logs.get(self.monitor)
        if current is not None and self.advance(float(current)):
            self.model.optimizer.learning_rate = rate * self.factor
            logging.info(
                "Epoch %d: %s has not improved for %d validated epochs; learning rate %.3g -> %.3g.",
                epoch + 1,
                self.monitor,
                self.patience,
                rate,
                rate * self.factor,
            )


def all_finite(variables):
    """Whether every value of ``variables`` (Keras variables or arrays) is finite."""
    return all(np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in variables)


class SaveTarget(keras.callbacks.Callback):
    """Saves the target network alone (``model.target``) as ``.keras`` files.

    Writes ``last.keras`` after every epoch and ``best.keras`` whenever the
    monitored validation metric improves; epochs with a non-finite loss are
    or non-finite weights are never saved, so the files always hold the last
    good weights.

    Args:
        model_dir: output directory.
        monitor: metric deciding "best" (default ``val_accuracy``, maximised).
        resume_epoch: epochs a resumed run has already completed; the best of
            those (``best.json``) is kept. 0 starts afresh.
    """

    def __init__(self, model_dir, monitor="val_accuracy", resume_epoch=0):
        super().__init__()
        self.model_dir = model_dir
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = None
        best_json = os.path.join(model_dir, "best.json")
        if resume_epoch and os.path.exists(best_json):
            with open(best_json) as f:
                saved = json.load(f)
            if int(saved["epoch"]) <= resume_epoch:  # else from an epoch that is trained again
                self.best, self.best_epoch = float(saved[monitor]), int(saved["epoch"]) - 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(float(logs.get("loss", math.nan))) or not all_finite(self.model.target.weights):
            return
        self.model.target.save(os.path.join(self.model_dir, "last.keras"))
        value = logs.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best, self.best_epoch = float(value), epoch
            self.model.target.save(os.path.join(self.model_dir, "best.keras"))
            with open(os.path.join(self.model_dir, "best.json"), "w") as f:
                json.dump({"epoch": epoch + 1, self.monitor: self.best}, f)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN/inf loss and remembers where it happened.

    Unlike ``keras.callbacks.TerminateOnNaN`` it keeps the position, so the
    caller can raise a :class:`TrainingDivergedError` with a useful message.
    """

    def __init__(self):
        super().__init__()
        self.failure = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = dict(epoch=self._epoch + 1, batch=batch + 1, logs={k: float(v) for k, v in logs.items()})
            self.model.stop_training = True

    def raise_if_failed(self, model_dir):
        """Raises :class:`TrainingDivergedError` if a non-finite loss was seen."""
        if self.failure is None:
            return
        terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.failure["logs"].items()))
        raise TrainingDivergedError(
            f"Loss became non-finite at epoch {self.failure['epoch']}, batch {self.failure['batch']} ({terms}). "
            f"Training stopped; the last good target is in {os.path.join(model_dir, 'last.keras')} if an epoch "
            "had completed. Lower --lr or --alpha, or check the data for bad values."
        )


def _json_number(value):
    """``value`` as a float, or None for NaN (which JSON lacks)."""
    return float(value) if math.isfinite(value) else None


class MeanAveragePrecision(keras.callbacks.Callback):
    """Writes the VOC 2007 mean average precision on validation data into the epoch logs.

    At each epoch end the model runs in inference mode over ``validation_data``;
    its outputs (logits: they rank as the sigmoid probabilities do) score each
    class, and :func:`sskt_tf.training.metrics.mean_average_precision` of those scores
    becomes ``logs[name]``. Labels of -1 (the difficult pairs of a multi-label
    validation split from :func:`sskt_tf.data.load_tfds`) are ignored.

    Callbacks see ``logs[name]`` only if they run after this one: put it before
    any callback that reads the logs (:class:`sskt_tf.training.history.HistoryLogger`, :class:`SaveTarget` with
    ``monitor="val_mAP"``, ``EarlyStopping``) in the list given to ``fit``.
    Keras' own ``History`` and progress bar always run last.

    The forward pass runs outside the distribution strategy, on the whole
    validation set, so every worker computes the same value. Keras' own
    validation (``fit(validation_data=...)``) sees the -1 labels too: its
    loss is meaningful only if the target loss masks them.

    Args:
        validation_data: ``(images, labels)`` batches (a ``tf.data.Dataset``
            or any iterable; further elements such as sample weights are
            ignored); labels ``[batch, classes]``: 1 positive, 0 negative,
            -1 ignored.
        name: key of the mAP in the logs.
        output_path: optional JSON file rewritten each epoch with the epoch,
            the mAP and the per-class APs (null for a class without positives).
        class_names: names of the classes in that file (default: indices).
        validation_epochs: 1-based epochs to score (those ``fit`` validates
            with ``validation_freq``); None = every epoch.

    Example:
        >>> callbacks = [MeanAveragePrecision(data.val), sskt_tf.training.history.HistoryLogger("history.csv")]
        >>> model.fit(data.train, epochs=2, callbacks=callbacks)
    """

    def __init__(self, validation_data, name="val_mAP", output_path=None, class_names=None, validation_epochs=None):
        super().__init__()
        self.validation_epochs = None if validation_epochs is None else set(validation_epochs)
        self.validation_data = validation_data
        self.name = name
        self.output_path = output_path
        self.class_names = class_names
        self._forward = None

    def set_model(self, model):
        super().set_model(model)
        self._forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def _scores_and_labels(self):
        """Model outputs and labels over the validation data, as ``[N, C]`` arrays."""
        scores, labels = [], []
        for batch in self.validation_data:
            scores.append(keras.ops.convert_to_numpy(self._forward(batch[0])).astype(np.float32))
            labels.append(keras.ops.convert_to_numpy(batch[1]))
        return np.concatenate(scores), np.concatenate(labels)

    def _write_report(self, epoch, mean_ap, ap):
        names = self.class_names or [str(index) for index in range(len(ap))]
        per_class = {name: _json_number(value) for name, value in zip(names, ap)}
        report = {"epoch": epoch + 1, self.name: _json_number(mean_ap), "ap": per_class}
        partial = f"{self.output_path}.partial"
        with open(partial, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(partial, self.output_path)

    def on_epoch_end(self, epoch, logs=None):
        if self.validation_epochs is not None and epoch + 1 not in self.validation_epochs:
            return
        mean_ap, ap = mean_average_precision(*self._scores_and_labels())
        if logs is not None:
            logs[self.name] = mean_ap
        if self.output_path:
            self._write_report(epoch, mean_ap, ap)
