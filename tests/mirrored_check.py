"""Trains and evaluates one SSKTModel with 1 replica and with 2 (MirroredStrategy on two
logical CPUs) from the same weights and batches; prints the results as JSON.

Run by tests/test_distribution.py in its own process, because logical devices must be
configured before TensorFlow initialises.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sskt_tf import SSKTModel, Source  # noqa: E402
from sskt_tf.batch_norm import batch_norm  # noqa: E402


def build(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    # Synchronized BatchNorm: global-batch statistics, whatever the replica count.
    x = keras.layers.ReLU(name="stage1")(batch_norm("bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    target = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    source_in = keras.Input((8, 8, 3))
    source_net = keras.Model(source_in, keras.layers.Dense(6)(keras.layers.Flatten()(source_in)))
    model = SSKTModel(target, [Source(source_net, "src")], head="linear")
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), weight_decay=1e-3, alpha=0.5, metrics=["accuracy"])
    return model


def run(strategy):
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (32, 8, 8, 3)).astype("float32")
    y = rng.randint(0, 3, 32)
    with strategy.scope():
        model = build()
    before = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    weights = [w.numpy().tolist() for w in model.weights]  # BatchNorm moving statistics included
    return dict(replicas=strategy.num_replicas_in_sync, evaluate=before, history=history, weights=weights)


if __name__ == "__main__":
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    results = [run(tf.distribute.OneDeviceStrategy(devices[0])), run(tf.distribute.MirroredStrategy(devices))]
    json.dump(results, sys.stdout)
