"""A narrow fix for Keras 3.15.1's ``fit`` under ``MultiWorkerMirroredStrategy``.

Two code paths of ``keras.src.backend.tensorflow.trainer`` only run with several
workers and both crash (DESIGN.md section 3); :func:`install_multi_worker_fix`
wraps them. ``sskt_tf.training.distribute.get_strategy("multi_worker_mirrored")``
installs it; it can be installed by hand for a strategy built elsewhere.
"""

import logging

import keras
import tensorflow as tf


def is_multi_worker(strategy):
    """Whether ``strategy`` synchronises more than one worker process."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


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
        logging.warning(
            "The multi-worker fix was written for Keras %s.x; this is Keras %s.", _TESTED_KERAS, keras.__version__
        )
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
