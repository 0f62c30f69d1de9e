"""Learning on real images: scikit-learn's handwritten digits (10 classes, chance = 10%)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sskt_tf import SSKTModel, data, sources, targets


@pytest.mark.slow
def test_sskt_learns_digits_far_above_chance(digits, tiny_source_path):
    train_x, train_y, val_x, val_y = digits
    keras.utils.set_random_seed(0)
    train = data.train_pipeline(
        tf.data.Dataset.from_tensor_slices((train_x, train_y)), batch_size=64, seed=0, augment=False
    )
    mean = tuple(train_x.reshape(-1, 3).mean(0))
    std = tuple(train_x.reshape(-1, 3).std(0))
    target = targets.get("resnet20", 10, image_size=16, mean=mean, std=std)
    model = SSKTModel(target, [sources.from_file(tiny_source_path)])
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), weight_decay=5e-4, metrics=["accuracy"])
    model.fit(train, epochs=6, shuffle=False, verbose=0)
    accuracy = model.evaluate(val_x.astype("float32"), val_y, return_dict=True, verbose=0)["accuracy"]
    print(f"digits validation accuracy: {accuracy:.4f}")
    assert accuracy > 0.85, accuracy
    predictions = np.argmax(model.predict(val_x.astype("float32"), verbose=0), axis=-1)
    assert np.mean(predictions == val_y) == pytest.approx(accuracy, abs=1e-6)
