"""The BatchNormalization of the built-in targets and heads."""

import keras
import tensorflow as tf

_FUSED_INPUT_DTYPES = ("float16", "bfloat16", "float32")


@keras.saving.register_keras_serializable(package="sskt_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that trains with TensorFlow's fused kernel where it can.

    Keras 3 normalises a training batch in several passes over the feature map
    (the moments, then the normalisation; ``synchronized=True`` adds a count
    tensor the size of the input). TensorFlow's ``FusedBatchNormV3`` does the
    same in one kernel, which trains a CIFAR ResNet-20 several percent faster
    on a CPU, and an SSKT target with its transfer modules about 13% faster
    (``tools/benchmark.py``). It is used for 4-D channels-last training
    batches whenever this replica's batch statistics are the ones to use: one
    replica in sync, or ``synchronized=False``. Otherwise (several replicas
    with ``synchronized=True``, masks, renorm, other ranks or axes, inference)
    the layer is Keras' own. Both give the same outputs and moving statistics
    up to float rounding: the fused kernel's unbiased variance is converted
    back to Keras' biased one, and its epsilon is at least 1.001e-5 (cuDNN's
    floor, applied by ``tf.compat.v1.nn.fused_batch_norm`` on every device).

    Args and call args: those of ``keras.layers.BatchNormalization``.
    """

    def _fused_training(self, inputs, training, mask):
        """Whether this call can use the fused training kernel."""
        return (
            bool(training) and self.trainable and mask is None and not self.renorm and self.center and self.scale
            and len(inputs.shape) == 4 and self.axis in (-1, 3) and keras.backend.backend() == "tensorflow"
            and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_INPUT_DTYPES
            and (not self.synchronized or tf.distribute.get_strategy().num_replicas_in_sync == 1)
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_training(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"), epsilon=self.epsilon,
            is_training=True,
        )
        # The kernel returns the Bessel-corrected variance; Keras' moving variance
        # averages the biased one (what the batch was normalised with).
        count = tf.cast(tf.size(inputs, out_type=tf.int64) // tf.cast(tf.shape(inputs)[-1], tf.int64), "float32")
        variance = variance * tf.math.divide_no_nan(count - 1.0, count)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


def batch_norm(name):
    """BatchNorm with PyTorch's defaults, synchronized across replicas.

    ``momentum=0.9`` and ``epsilon=1e-5`` are PyTorch's ``BatchNorm2d`` defaults
    (the original code's). ``synchronized=True`` computes the batch statistics
    over the *global* batch under any tf.distribute strategy, so training (and
    the moving statistics every worker saves) do not depend on the number of
    replicas or workers. With one replica it is ordinary (fused) BatchNorm;
    with several it adds all-reduces of the per-channel sums to every step
    (the variance is then computed as E[x^2] - E[x]^2).

    Args:
        name: layer name.

    Returns:
        A :class:`BatchNorm`.
    """
    return BatchNorm(momentum=0.9, epsilon=1e-5, synchronized=True, name=name)
