"""What each source's soft labels say about the target's classes: python tools/inspect_soft_labels.py

The same as the ``sskt-inspect-soft-labels`` console script; see :mod:`sskt_tf.cli.inspect_soft_labels` for the flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf.cli.inspect_soft_labels import run  # noqa: E402

if __name__ == "__main__":
    run()
