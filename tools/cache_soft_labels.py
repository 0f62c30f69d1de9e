"""Runs the sources once over K augmented views of the training set and caches their logits.

The same as the ``sskt-cache-soft-labels`` console script; see :mod:`sskt_tf.cli.cache_soft_labels` for the flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf.cli.cache_soft_labels import run  # noqa: E402

if __name__ == "__main__":
    run()
