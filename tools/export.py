"""Exports a run's target for serving: a SavedModel for TF Serving, or TFLite.

The same as the ``sskt-export`` console script; see :mod:`sskt_tf.cli.export` for the flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf.cli.export import run  # noqa: E402

if __name__ == "__main__":
    run()
