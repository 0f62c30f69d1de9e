"""Loss functions for SSKT: auxiliary (soft-label) losses and target losses.

All classes are ``keras.losses.Loss`` subclasses with the default
``"sum_over_batch_size"`` reduction, so Keras divides them by the number of
replicas under a ``tf.distribute`` strategy: summed over replicas they give the
mean over the *global* batch.

Auxiliary losses take ``y_true`` = source logits (the soft-label provider) and
``y_pred`` = auxiliary-head logits, both ``[batch, source_classes]``.
"""

import keras
from keras import ops

AUX_LOSSES = ("kd", "soft_ce", "bce", "focal")
TARGET_LOSSES = ("ce", "bce", "focal")


def _as_float32(*tensors):
    return [ops.cast(t, "float32") for t in tensors]


def _bce_with_logits(p, z):
    """Element-wise sigmoid cross-entropy of targets ``p`` and logits ``z``, stably:
    ``max(z, 0) - z * p + log(1 + exp(-|z|))``."""
    return ops.relu(z) - z * p + ops.log1p(ops.exp(-ops.abs(z)))


class _TemperatureLoss(keras.losses.Loss):
    """Base class of the soft-label losses.

    Divides both logits by the temperature ``T``, computes the subclass's
    per-example ``soft_loss`` and multiplies by ``T^2`` (which keeps gradient
    magnitudes independent of ``T``, as in Hinton et al.).
    """

    def __init__(self, temperature=3.0, name=None, reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        source_logits, head_logits = _as_float32(y_true, y_pred)
        t = self.temperature
        return t * t * self.soft_loss(source_logits / t, head_logits / t)

    def soft_loss(self, source_logits, head_logits):
        """Per-example loss on temperature-scaled logits; implemented by subclasses."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


@keras.saving.register_keras_serializable(package="sskt_tf")
class KDLoss(_TemperatureLoss):
    """Hinton distillation: ``T^2 * KL(softmax(g/T) || softmax(h/T))``.

    The KL divergence is summed over classes and averaged over the batch (the
    original SSKT code averaged over classes too, i.e. divided this by the
    number of source classes).

    Args:
        temperature: softmax temperature ``T``.
        name: loss name.
    """

    def __init__(self, temperature=3.0, name="kd", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def soft_loss(self, source_logits, head_logits):
        log_p = ops.log_softmax(source_logits, axis=-1)
        log_q = ops.log_softmax(head_logits, axis=-1)
        return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


@keras.saving.register_keras_serializable(package="sskt_tf")
class SoftCrossEntropy(_TemperatureLoss):
    """Soft-target cross-entropy: ``T^2 * sum_c -softmax(g/T)_c log softmax(h/T)_c``.

    Differs from :class:`KDLoss` by the source entropy, a constant, so both give
    identical gradients.

    Args:
        temperature: softmax temperature ``T``.
        name: loss name.
    """

    def __init__(self, temperature=3.0, name="soft_ce", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def soft_loss(self, source_logits, head_logits):
        p = ops.softmax(source_logits, axis=-1)
        return -ops.sum(p * ops.log_softmax(head_logits, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="sskt_tf")
class SoftBinaryCrossEntropy(_TemperatureLoss):
    """Sigmoid soft targets: ``T^2 * mean_c BCE(sigmoid(g/T)_c, sigmoid(h/T)_c)``.

    For multi-label sources whose classes are not mutually exclusive.

    Args:
        temperature: sigmoid temperature ``T``.
        name: loss name.
    """

    def __init__(self, temperature=3.0, name="bce", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)

    def soft_loss(self, source_logits, head_logits):
        return ops.mean(_bce_with_logits(ops.sigmoid(source_logits), head_logits), axis=-1)


@keras.saving.register_keras_serializable(package="sskt_tf")
class SoftFocalLoss(_TemperatureLoss):
    """Focal loss towards soft targets.

    ``T^2 * sum_c -softmax(g/T)_c (1 - q_c)^gamma log q_c`` with
    ``q = softmax(h/T)``; ``gamma = 0`` gives :class:`SoftCrossEntropy`.

    Args:
        temperature: softmax temperature ``T``.
        gamma: focusing parameter.
        name: loss name.
    """

    def __init__(self, temperature=3.0, gamma=2.0, name="focal", **kwargs):
        super().__init__(temperature=temperature, name=name, **kwargs)
        self.gamma = float(gamma)

    def soft_loss(self, source_logits, head_logits):
        p = ops.softmax(source_logits, axis=-1)
        log_q = ops.log_softmax(head_logits, axis=-1)
        return -ops.sum(p * ops.power(1.0 - ops.exp(log_q), self.gamma) * log_q, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["gamma"] = self.gamma
        return config


@keras.saving.register_keras_serializable(package="sskt_tf")
class CategoricalFocalLoss(keras.losses.Loss):
    """Softmax focal loss towards a target distribution: ``-sum_c p_c (1 - q_c)^gamma log q_c``.

    ``y_true`` holds probabilities (one-hot labels or soft labels, such as
    MAXL's generated auxiliary labels) and ``y_pred`` logits, ``q =
    softmax(y_pred)``. MAXL trains both of its tasks with it (gamma 2).

    Args:
        gamma: focusing parameter (0 gives soft-target cross-entropy).
        name: loss name.
    """

    def __init__(self, gamma=2.0, name="categorical_focal", reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = float(gamma)

    def call(self, y_true, y_pred):
        targets, logits = _as_float32(y_true, y_pred)
        log_q = ops.log_softmax(logits, axis=-1)
        return -ops.sum(targets * ops.power(1.0 - ops.exp(log_q), self.gamma) * log_q, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["gamma"] = self.gamma
        return config


@keras.saving.register_keras_serializable(package="sskt_tf")
class SparseFocalLoss(CategoricalFocalLoss):
    """Softmax focal loss on integer labels: ``-(1 - p_y)^gamma log p_y``.

    Args:
        gamma: focusing parameter (0 gives cross-entropy).
        name: loss name.
    """

    def __init__(self, gamma=2.0, name="focal", **kwargs):
        super().__init__(gamma=gamma, name=name, **kwargs)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        return super().call(ops.one_hot(labels, ops.shape(y_pred)[-1]), y_pred)


@keras.saving.register_keras_serializable(package="sskt_tf")
class MultiLabelBCE(keras.losses.Loss):
    """Sigmoid cross-entropy on multi-hot labels, ignoring labels below 0.

    ``mean_c BCE(y_c, sigmoid(z_c))`` over the classes, where a label of -1
    (a "difficult" pair of VOC's test split, see :func:`sskt_tf.data.load_tfds`)
    contributes nothing; with labels in {0, 1} it equals
    ``keras.losses.BinaryCrossentropy(from_logits=True)``.

    Args:
        name: loss name.
    """

    def __init__(self, name="bce", reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        labels, logits = _as_float32(y_true, y_pred)
        known = ops.cast(labels >= 0, "float32")
        return ops.mean(known * _bce_with_logits(labels * known, logits), axis=-1)


_AUX_CLASSES = {
    "kd": KDLoss,
    "soft_ce": SoftCrossEntropy,
    "bce": SoftBinaryCrossEntropy,
    "focal": SoftFocalLoss,
}


def get(name, temperature=3.0):
    """Returns the auxiliary (soft-label) loss called ``name``.

    Args:
        name: one of ``"kd"``, ``"soft_ce"``, ``"bce"``, ``"focal"``, or a
            ``keras.losses.Loss`` instance (returned unchanged).
        temperature: temperature ``T`` of the named loss.

    Returns:
        A ``keras.losses.Loss``.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(name, keras.losses.Loss):
        return name
    if name not in _AUX_CLASSES:
        raise ValueError(f"Unknown auxiliary loss {name!r}; choose one of {', '.join(AUX_LOSSES)}.")
    return _AUX_CLASSES[name](temperature=temperature)


def get_target_loss(name):
    """Returns the target (ground-truth) loss called ``name``, on logits.

    Args:
        name: ``"ce"`` (softmax cross-entropy on integer labels), ``"bce"``
            (sigmoid cross-entropy on multi-hot labels, -1 = ignored), ``"focal"`` (softmax
            focal loss, gamma 2, on integer labels), or a ``keras.losses.Loss``
            instance (returned unchanged).

    Returns:
        A ``keras.losses.Loss`` that takes logits.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(name, keras.losses.Loss):
        return name
    if name in ("ce", "sparse_categorical_crossentropy"):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="ce")
    if name in ("bce", "binary_crossentropy"):
        return MultiLabelBCE()
    if name == "focal":
        return SparseFocalLoss()
    raise ValueError(f"Unknown target loss {name!r}; choose one of {', '.join(TARGET_LOSSES)}.")


# The former name, kept for code written against it.
get_target = get_target_loss
