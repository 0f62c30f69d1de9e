"""--lr_schedule=plateau: Keras' ReduceLROnPlateau rule, and a resumed run continues the same schedule."""

import keras
import numpy as np
import pytest

from sskt_tf.training import history as history_lib
from sskt_tf.training.callbacks import PlateauSchedule

# Improves, stalls for 3 epochs (a reduction at patience 3), skips validation, stalls again, improves by less than
# min_delta (no improvement), then improves.
VAL_LOSSES = [1.0, 0.9, 0.95, 0.91, 0.92, None, 0.93, 0.94, 0.89995, 0.91, 0.5, 0.6, 0.7, 0.8]


def _model(lr=1.0):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(lr), loss="mse")
    return model


def _rates(callback, losses, start=0):
    model = _model()
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for epoch, loss in enumerate(losses, start=start):
        logs = {} if loss is None else {"val_loss": loss}
        callback.on_epoch_end(epoch, logs)
        rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    return rates, model


def test_plateau_schedule_follows_keras_reduce_lr_on_plateau(tmp_path):
    ours, _ = _rates(PlateauSchedule(str(tmp_path / "history.csv"), factor=0.1, patience=3), VAL_LOSSES)
    keras_callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=3, min_lr=0.0)
    with pytest.warns(UserWarning, match="not available"):  # the epoch without validation
        theirs, _ = _rates(keras_callback, VAL_LOSSES)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert ours[4] == pytest.approx(0.1) and ours[-1] == pytest.approx(0.001)  # three plateaus


def test_a_resumed_plateau_schedule_continues_where_it_stopped(tmp_path):
    history = str(tmp_path / "history.csv")
    uninterrupted, _ = _rates(PlateauSchedule(history, factor=0.1, patience=3), VAL_LOSSES)
    split = 8  # stopped after 8 epochs, history.csv holds them, the optimizer state holds the rate
    rows = [{"epoch": str(e), "val_loss": "" if v is None else str(v)} for e, v in enumerate(VAL_LOSSES[:split])]
    history_lib.write_history(history, rows)
    callback = PlateauSchedule(history, resume_epoch=split, factor=0.1, patience=3)
    model = _model(lr=uninterrupted[split - 1])
    callback.set_model(model)
    callback.on_train_begin()
    resumed = []
    for epoch, loss in enumerate(VAL_LOSSES[split:], start=split):
        callback.on_epoch_end(epoch, {} if loss is None else {"val_loss": loss})
        resumed.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    np.testing.assert_allclose(resumed, uninterrupted[split:], rtol=1e-6)
    fresh, _ = _rates(PlateauSchedule(history, factor=0.1, patience=3), VAL_LOSSES[split:], start=split)
    assert not np.allclose(fresh, np.array(uninterrupted[split:]) / uninterrupted[split - 1])  # replay matters
