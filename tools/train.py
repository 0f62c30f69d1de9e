"""Trains SSKT from flags: python tools/train.py --flagfile=configs/cifar10.flags

Every flag is a field of sskt_tf.training.config.TrainConfig; see README.md for the list.
"""

import os

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sskt_tf import training  # noqa: E402
from sskt_tf.training.flags import config_from_flags, define_flags, parse_flags_or_exit, run_tool  # noqa: E402

define_flags()


def main(argv):
    logging.set_verbosity(logging.INFO)
    run_tool(argv, lambda: training.train(config_from_flags(flags.FLAGS)))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
