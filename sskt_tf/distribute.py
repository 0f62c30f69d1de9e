"""tf.distribute strategies from a name, and a narrow fix for multi-worker ``fit``.

``get_strategy("mirrored")`` and friends return the standard TensorFlow strategies;
create the model, its sources, the optimizer and the metrics inside
``strategy.scope()`` and feed ``fit`` global batches.

Keras 3.15.1's ``fit`` fails under ``MultiWorkerMirroredStrategy`` with more than one
worker, in two places (see ``install_multi_worker_fix``); the fix is installed by
``get_strategy("multi_worker_mirrored")``, and can be installed by hand for a
strategy built elsewhere.
"""

import json
import logging
import os

import keras
import tensorflow as tf

from sskt_tf.errors import ConfigError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")


def get_strategy(name="default", tpu=""):
    """The ``tf.distribute`` strategy called ``name``.

    Args:
        name: ``default`` (no distribution: TensorFlow's default strategy),
            ``one_device`` (the first GPU, else the CPU), ``mirrored`` (all
            local GPUs, synchronous), ``multi_worker_mirrored`` (synchronous
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
        return tf.distribute.MirroredStrategy()
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


def is_multi_worker(strategy):
    """Whether ``strategy`` synchronises more than one worker process."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


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


# ---------------------------------------------------------------------------------------
# Keras 3.15.1 under MultiWorkerMirroredStrategy (DESIGN.md section 3). Two code paths of
# keras.src.backend.tensorflow.trainer only run with several workers and both crash:
#  1. TensorFlowTrainer._maybe_symbolic_build reduces a whole input batch across workers
#     with strategy.reduce("MEAN", batch, axis=None) just to learn its shapes
#     ("Attempt to convert a value (PerReplica...)"). The fix builds from a zero batch
#     shaped like the dataset's element_spec, which also avoids Keras' extra pass over
#     the input (it advances a reshuffling dataset, so training would not start with
#     the batches a single process starts with).
#  2. reduce_per_replica averages every per-step log with strategy.reduce("MEAN", v,
#     axis=0), which fails on scalars ("Invalid reduction dimension 0"). The fix uses
#     axis=None for scalars (the cross-worker mean) and leaves everything else to Keras.
# Both wrappers defer to the original code whenever there is a single worker.
# ---------------------------------------------------------------------------------------
_TESTED_KERAS = "3.15"


def install_multi_worker_fix():
    """Patches Keras' TensorFlow trainer so ``fit`` works with several workers.

    Idempotent. Changes behaviour only in multi-worker mode, where Keras
    3.15.1 crashes without it. ``tests/test_multi_worker.py`` trains with two
    worker processes and fails if either crash comes back.

    Returns:
        True if the fix is (now) installed.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_sskt_multi_worker_fix", False):
        return True
    if not keras.__version__.startswith(_TESTED_KERAS):
        logging.warning("The multi-worker fix was written for Keras %s.x; this is Keras %s.", _TESTED_KERAS, keras.__version__)
    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not is_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        # A batch of zeros shaped like the dataset's elements: reading a real batch here
        # (as Keras does) opens an extra iterator, which advances a reshuffling dataset.
        data_batch = tf.nest.map_structure(_zeros_like_spec, iterator._distributed_dataset.element_spec)
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def reduce(value):
            scalar = len(_first_local(strategy, value).shape) == 0
            return strategy.reduce("MEAN", value, axis=None if scalar else 0)

        return tf.nest.map_structure(reduce, values)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._sskt_multi_worker_fix = True
    return True


def _zeros_like_spec(spec):
    per_replica = getattr(spec, "_value_specs", None)  # a PerReplicaSpec: one spec per local replica
    if per_replica:
        spec = per_replica[0]
    return tf.zeros([1 if size is None else size for size in spec.shape], spec.dtype)


def _first_local(strategy, value):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value
