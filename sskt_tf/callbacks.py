"""Keras callbacks used by the training loop."""

import json
import math
import os

import keras
import numpy as np

from sskt_tf.errors import TrainingDivergedError


def step_schedule(base_lr, milestones, decay):
    """Step learning-rate schedule per epoch, as PyTorch's ``MultiStepLR``.

    Args:
        base_lr: learning rate of epoch 0.
        milestones: epochs (0-based) from which one more ``decay`` applies.
        decay: multiplicative factor per milestone.

    Returns:
        A function ``epoch -> learning rate``.
    """
    milestones = sorted(milestones)
    return lambda epoch, lr=None: base_lr * decay ** sum(epoch >= m for m in milestones)


def _all_finite(variables):
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
    """

    def __init__(self, model_dir, monitor="val_accuracy"):
        super().__init__()
        self.model_dir = model_dir
        self.monitor = monitor
        self.best = -math.inf
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not math.isfinite(float(logs.get("loss", math.nan))) or not _all_finite(self.model.target.weights):
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
