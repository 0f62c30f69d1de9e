"""The BatchNormalization of the built-in targets and heads."""

from keras import layers


def batch_norm(name):
    """BatchNorm with PyTorch's defaults, synchronized across replicas.

    ``momentum=0.9`` and ``epsilon=1e-5`` are PyTorch's ``BatchNorm2d`` defaults
    (the original code's). ``synchronized=True`` computes the batch statistics
    over the *global* batch under any tf.distribute strategy, so training (and
    the moving statistics every worker saves) do not depend on the number of
    replicas or workers. With one replica it normalises as ordinary BatchNorm
    does, up to float rounding (the variance is computed as E[x^2] - E[x]^2);
    with several it adds all-reduces of the per-channel sums to every step.

    Args:
        name: layer name.

    Returns:
        A ``keras.layers.BatchNormalization``.
    """
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, synchronized=True, name=name)
