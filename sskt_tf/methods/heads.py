"""Auxiliary heads: map target features to one source's label space."""

import keras
from keras import layers, ops

from sskt_tf.targets.layers import conv_bn_layers

HEAD_KINDS = ("linear", "transfer")


def _as_list(features):
    return list(features) if isinstance(features, (list, tuple)) else [features]


def _pool(feature):
    """Global average pool of a 4-D feature map; 2-D features pass through."""
    return ops.mean(feature, axis=(1, 2)) if len(feature.shape) == 4 else feature


@keras.saving.register_keras_serializable(package="sskt_tf")
class LinearHead(layers.Layer):
    """``Dense(num_classes)`` on the target's pooled final features.

    Args:
        num_classes: size of the source's label space.

    Call args:
        features: a tensor or a one-element list; 4-D maps are average-pooled.

    Returns:
        Logits ``[batch, num_classes]``.

    Example:
        >>> head = LinearHead(1000)
        >>> head(keras.ops.zeros((2, 64))).shape
        (2, 1000)
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.dense = layers.Dense(self.num_classes, name="logits", dtype="float32")

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(shapes) != 1:
            raise ValueError(f"LinearHead takes one feature tensor, got {len(shapes)}.")
        self.dense.build((shapes[0][0], shapes[0][-1]))

    def call(self, features):
        (feature,) = _as_list(features)
        return self.dense(_pool(feature))

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config


def _conv_bn_relu(filters, kernel_size, strides, name):
    return [*conv_bn_layers(filters, kernel_size, strides, name=name), layers.ReLU(name=f"{name}_relu")]


@keras.saving.register_keras_serializable(package="sskt_tf")
class TransferModule(layers.Layer):
    """SSKT transfer module: one bottleneck branch per tapped target stage.

    Each branch is ``[1x1 conv to C/2, BN, ReLU; 3x3 conv stride 2, BN, ReLU;
    1x1 conv to C, BN, ReLU]`` followed by global average pooling. The branch
    outputs are averaged (not concatenated) and classified by
    ``Dense(num_classes)``.

    Args:
        num_classes: size of the source's label space.
        width: ``C``; defaults to the channel count of the last feature map.

    Call args:
        features: list of 4-D stage outputs ``b_1 .. b_n`` of the target.

    Returns:
        Logits ``[batch, num_classes]``.

    Example:
        >>> head = TransferModule(365)
        >>> maps = [keras.ops.zeros((2, 32, 32, 16)), keras.ops.zeros((2, 8, 8, 64))]
        >>> head(maps).shape
        (2, 365)
    """

    def __init__(self, num_classes, width=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.width = None if width is None else int(width)
        self.branches = []
        self.dense = layers.Dense(self.num_classes, name="logits", dtype="float32")

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        for shape in shapes:
            if len(shape) != 4:
                raise ValueError(f"TransferModule needs 4-D stage outputs, got shape {tuple(shape)}.")
        width = self.width or int(shapes[-1][-1])
        self.width = width
        for index, shape in enumerate(shapes):
            prefix = f"branch{index + 1}"
            branch = (
                _conv_bn_relu(max(width // 2, 1), 1, 1, f"{prefix}_reduce")
                + _conv_bn_relu(max(width // 2, 1), 3, 2, f"{prefix}_down")
                + _conv_bn_relu(width, 1, 1, f"{prefix}_expand")
            )
            sequential = keras.Sequential(branch, name=prefix)
            sequential.build(tuple(shape))
            self.branches.append(sequential)
        self.dense.build((shapes[0][0], width))

    def call(self, features, training=None):
        pooled = []
        for feature, branch in zip(_as_list(features), self.branches):
            pooled.append(ops.mean(branch(feature, training=training), axis=(1, 2)))
        return self.dense(ops.mean(ops.stack(pooled, axis=0), axis=0))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, width=self.width)
        return config


def build(kind, num_classes, name=None):
    """Creates an auxiliary head by kind.

    Args:
        kind: ``"linear"`` or ``"transfer"``.
        num_classes: size of the source's label space.
        name: layer name.

    Returns:
        A ``LinearHead`` or ``TransferModule``.
    """
    if kind == "linear":
        return LinearHead(num_classes, name=name)
    if kind == "transfer":
        return TransferModule(num_classes, name=name)
    raise ValueError(f"Unknown head {kind!r}; choose one of {', '.join(HEAD_KINDS)}.")
