"""sskt_tf: Self-Supervised Knowledge Transfer (WACV 2022) in TensorFlow/Keras."""

from sskt_tf import data, distribute, export, heads, losses, sources, targets, torch_resnet, train_lib
from sskt_tf.config import TrainConfig
from sskt_tf.errors import ConfigError, TrainingDivergedError
from sskt_tf.heads import LinearHead, TransferModule
from sskt_tf.model import SSKTModel
from sskt_tf.sources import Source

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
    "distribute",
    "export",
    "heads",
    "losses",
    "sources",
    "targets",
    "torch_resnet",
    "train_lib",
]
