"""Trains and evaluates one model with 1 replica and with 2 (MirroredStrategy on two
logical CPUs) from the same weights and batches; prints the results as JSON.

Usage: python tests/helpers/mirrored_check.py sskt kd dml maxl   (any of them; prints {method: [one, two]})

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

from sskt_tf import Source, SSKTModel  # noqa: E402
from sskt_tf.methods.dml import DMLModel  # noqa: E402
from sskt_tf.methods.kd import KDModel  # noqa: E402
from sskt_tf.methods.maxl import MAXLModel  # noqa: E402
from sskt_tf.targets.layers import batch_norm  # noqa: E402


def network(num_classes):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    # Synchronized BatchNorm: global-batch statistics, whatever the replica count.
    x = keras.layers.ReLU(name="stage1")(batch_norm("bn")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))


def frozen(num_classes, name):
    source_in = keras.Input((8, 8, 3))
    return Source(keras.Model(source_in, keras.layers.Dense(num_classes)(keras.layers.Flatten()(source_in))), name)


def build(method, seed=0):
    keras.utils.set_random_seed(seed)
    common = dict(weight_decay=1e-3, metrics=["accuracy"])
    if method == "sskt":
        model = SSKTModel(network(3), [frozen(6, "src")], head="linear")
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), alpha=0.5, **common)
    elif method == "kd":
        model = KDModel(network(3), frozen(3, "teacher"))
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), alpha=0.7, temperature=2.0, **common)
    elif method == "dml":
        model = DMLModel(network(3), network(3))
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), alpha=1.0, temperature=1.0, **common)
    else:
        model = MAXLModel(network(3), network(6), psi=2)
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), generator_lr=0.01, **common)
    return model


def _each_batch_on_every_replica(x, batch_size, replicas):
    """``x`` with each batch repeated once per replica, so every replica sees that batch."""
    batches = [x[i : i + batch_size] for i in range(0, len(x), batch_size)]
    return np.concatenate([np.concatenate([batch] * replicas) for batch in batches])


def run(strategy, method):
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (32, 8, 8, 3)).astype("float32")
    y = rng.randint(0, 3, 32)
    batch_size = 16
    if method == "maxl":
        # MAXL's inner step uses each replica's local batch: it matches one device's only
        # when every replica holds the same batch (the global statistics are then the local ones).
        replicas, batch_size = strategy.num_replicas_in_sync, 8
        x, y = (_each_batch_on_every_replica(a, batch_size, replicas) for a in (x, y))
        batch_size *= replicas
    with strategy.scope():
        model = build(method)
    before = model.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)
    history = model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0).history
    weights = [w.numpy().tolist() for w in model.weights]  # BatchNorm moving statistics included
    return dict(replicas=strategy.num_replicas_in_sync, evaluate=before, history=history, weights=weights)


if __name__ == "__main__":
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    # One MirroredStrategy for every method: a second one in the same process clashes in
    # its collective ops.
    one_device, mirrored = tf.distribute.OneDeviceStrategy(devices[0]), tf.distribute.MirroredStrategy(devices)
    results = {method: [run(one_device, method), run(mirrored, method)] for method in sys.argv[1:]}
    json.dump(results, sys.stdout)
