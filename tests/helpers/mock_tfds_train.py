"""Runs tools/train.py with tfds mocked (tfds.testing.mock_data): no download, random images.

Usage: python tests/helpers/mock_tfds_train.py NUM_EXAMPLES --flag=value ...
"""

import os
import runpy
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(REPO, "tests") not in sys.path:  # run as a script (in-process runs have it)
    sys.path.insert(0, os.path.join(REPO, "tests"))

from helpers.mock_tfds import mocked_tfds  # noqa: E402

TRAIN_PY = os.path.join(REPO, "tools", "train.py")

if __name__ == "__main__":
    num_examples = int(sys.argv.pop(1))
    sys.argv[0] = TRAIN_PY
    with mocked_tfds(num_examples):
        runpy.run_path(TRAIN_PY, run_name="__main__")
