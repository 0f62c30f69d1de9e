"""sskt_tf: Self-Supervised Knowledge Transfer (WACV 2022) in TensorFlow/Keras.

===============  ====================================================================
``methods``      SSKT (:class:`SSKTModel`, its heads and losses) and the baselines
``sources``      frozen source networks (:class:`Source`), ImageNet, Places365, files
``soft_labels``  the soft-label cache: the sources' logits computed once
``targets``      the networks SSKT trains (CIFAR ResNets, VGG, torchvision ResNets)
``data``         tfds and folder datasets, subsets, augmentation, pipelines
``training``     configuration, the training loop, callbacks, distribution, export
===============  ====================================================================
"""

from sskt_tf._tensorflow_startup import import_tensorflow_quietly

import_tensorflow_quietly()  # before any module here imports TensorFlow

from sskt_tf import data, methods  # noqa: E402, soft_labels, sources, targets, training
from sskt_tf.errors import ConfigError, TrainingDivergedError  # noqa: E402
from sskt_tf.methods.heads import LinearHead, TransferModule  # noqa: E402
from sskt_tf.methods.sskt import SSKTModel  # noqa: E402
from sskt_tf.sources import Source  # noqa: E402
from sskt_tf.training import TrainConfig, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "LinearHead",
    "SSKTModel",
    "Source",
    "TrainConfig",
    "TrainingDivergedError",
    "TransferModule",
    "data",
    "methods",
    "soft_labels",
    "sources",
    "targets",
    "train",
    "training",
]
