"""Training from a configuration: what ``tools/train.py`` and the other tools run.

============================  ===================================================================
``config``                    :class:`TrainConfig`: one experiment, as data
``flags``                     absl flags and flagfiles from :class:`TrainConfig`
``checks``                    the configuration's checks, before and after the data loads
``run_data``                  the run's data: dataset, subset, unlabelled images, epoch lengths
``run_sources``               a run's sources over its training images: outputs and ranking
``precision``                 Keras dtype policies (``--mixed_precision``)
``loop``                      :func:`train`: the training loop
``callbacks``                 checkpoints, NaN guard, learning-rate schedule, VOC mAP
``backup``                    per-epoch backups: atomic, the last two kept, agreed among workers
``history``                   ``history.csv``, one row per epoch
``distribute``                tf.distribute strategies by name; which worker this is
``keras_multi_worker_patch``  the fix Keras 3.15.1's multi-worker ``fit`` needs
``metrics``                   Pascal VOC average precision and mAP
``build_cache``               a configuration's soft-label cache (``tools/cache_soft_labels.py``)
``export``                    SavedModel and TFLite export of a run's target
============================  ===================================================================
"""

from sskt_tf.training.build_cache import build_soft_label_cache
from sskt_tf.training.checks import validate
from sskt_tf.training.config import TrainConfig
from sskt_tf.training.export import export_run
from sskt_tf.training.loop import train
from sskt_tf.training.precision import dtype_policy
from sskt_tf.training.run_data import load_data, load_splits

__all__ = [
    "TrainConfig",
    "build_soft_label_cache",
    "dtype_policy",
    "export_run",
    "load_data",
    "load_splits",
    "train",
    "validate",
]
