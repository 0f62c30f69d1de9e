"""tools/train.py on two logical CPUs, so that ``--distribution_strategy=mirrored`` trains two local replicas.

Usage: python tests/helpers/train_on_two_cpus.py --distribution_strategy=mirrored <train flags>

Logical devices must be configured before TensorFlow initialises, hence a process of its own.
"""

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from sskt_tf.cli.train import run  # noqa: E402

if __name__ == "__main__":
    run()
