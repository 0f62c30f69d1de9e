"""Ranks candidate sources for a target before training: python tools/rank_sources.py

The same as the ``sskt-rank-sources`` console script; see :mod:`sskt_tf.cli.rank_sources` for the flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf.cli.rank_sources import run  # noqa: E402

if __name__ == "__main__":
    run()
