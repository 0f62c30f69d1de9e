"""Trains SSKT from flags: python tools/train.py --flagfile=configs/cifar10.flags

Every flag is a field of sskt_tf.training.config.TrainConfig; docs/reference/flags.md lists them
(python -m sskt_tf.cli.flag_reference writes it).
"""

from absl import app, logging

from sskt_tf import training
from sskt_tf.cli.tool import parse_flags_or_exit, run_tool
from sskt_tf.training.flags import config_from_command_line, define_flags

define_flags()


def main(argv):
    logging.set_verbosity(logging.INFO)
    run_tool(argv, lambda: training.train(config_from_command_line()))


def run():
    """The console script's entry point: parses the flags and runs :func:`main`."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
