"""Trains SSKT from flags: python tools/train.py --flagfile=configs/cifar10.flags

The same as the ``sskt-train`` console script; see :mod:`sskt_tf.cli.train` for the flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf.cli.train import run  # noqa: E402

if __name__ == "__main__":
    run()
