"""tf.distribute strategies from a name, and which worker this process is.

``get_strategy("mirrored")`` and friends return the standard TensorFlow strategies;
create the model, its sources, the optimizer and the metrics inside
``strategy.scope()`` and feed ``fit`` global batches.

Keras 3.15.1's ``fit`` fails under ``MultiWorkerMirroredStrategy`` with more than one
worker; ``get_strategy("multi_worker_mirrored")`` installs the fix of
:mod:`sskt_tf.training.keras_multi_worker_patch`.
"""

import json
import logging
import os

import tensorflow as tf

from sskt_tf.errors import ConfigError
from sskt_tf.training.keras_multi_worker_patch import install_multi_worker_fix, is_multi_worker

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def get_strategy(name="default", tpu=""):
    """The ``tf.distribute`` strategy called ``name``.

    Args:
        name: ``default`` (no distribution: TensorFlow's default strategy),
            ``one_device`` (the first GPU, else the CPU), ``mirrored`` (all
            local GPUs, else every logical CPU; synchronous), ``multi_worker_mirrored`` (synchronous
            over the machines in ``TF_CONFIG``), or ``tpu``.
        tpu: TPU address (``grpc://...``) or name for ``tpu``; empty = the
            local TPU or the one the environment names.

    Returns:
        A ``tf.distribute.Strategy``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # Without GPUs, one replica per logical CPU (one, unless configured otherwise).
        return tf.distribute.MirroredStrategy([device.name for device in tf.config.list_logical_devices("CPU")])
    if name == "multi_worker_mirrored":
        _check_tf_config()
        install_multi_worker_fix()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise ConfigError(f"No TPU found{f' at {tpu!r}' if tpu else ''}: {error}") from error
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"Unknown --distribution_strategy={name}; choose one of {', '.join(STRATEGIES)}.")


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        logging.info("TF_CONFIG is not set: multi_worker_mirrored runs as a single worker.")
        return
    try:
        config = json.loads(raw)
        cluster = config["cluster"]
        workers = cluster.get("worker", []) + cluster.get("chief", [])
        task = config["task"]
        task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"TF_CONFIG is not valid ({error!r}): expected "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}.'
        ) from error
    if not isinstance(workers, list) or not workers:
        raise ConfigError("TF_CONFIG's cluster must list its workers (and chief) as host:port addresses.")


def worker_id(strategy):
    """``(task_type, task_id)`` of this process; ``("worker", 0)`` outside multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None:
        return "worker", 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
    """Whether this process writes the run's outputs: the chief, else worker 0."""
    task_type, task_id = worker_id(strategy)
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not _has_chief(strategy))


def _has_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return resolver is not None and "chief" in resolver.cluster_spec().as_dict()
