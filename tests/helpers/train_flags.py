"""A TrainConfig from tools/train.py's command-line arguments, parsed as the tool parses them."""

from absl import flags

from sskt_tf.training.flags import config_from_flags, define_flags


def train_config(args):
    """Parses ``args`` (without the program name) into a TrainConfig.

    Args:
        args: command-line arguments, e.g. ``["--flagfile=configs/cifar10.flags"]``.

    Returns:
        The TrainConfig they give.
    """
    values = flags.FlagValues()
    define_flags(values)
    values(["train.py", *args])
    return config_from_flags(values)
