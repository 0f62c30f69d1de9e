"""Converts a torchvision-layout ResNet checkpoint (e.g. CSAIL Places365) to Keras.

The same as the ``sskt-convert-torch-resnet`` console script; see :mod:`sskt_tf.cli.convert_torch_resnet` for the flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf.cli.convert_torch_resnet import run  # noqa: E402

if __name__ == "__main__":
    run()
