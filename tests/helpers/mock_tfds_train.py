"""Runs tools/train.py with tfds mocked (tfds.testing.mock_data): no download, random images.

Usage: python tests/helpers/mock_tfds_train.py NUM_EXAMPLES --flag=value ...
"""

import os
import runpy
import sys

import tensorflow_datasets as tfds

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_PY = os.path.join(REPO, "tools", "train.py")

if __name__ == "__main__":
    num_examples = int(sys.argv.pop(1))
    sys.argv[0] = TRAIN_PY
    with tfds.testing.mock_data(num_examples=num_examples):
        runpy.run_path(TRAIN_PY, run_name="__main__")
