"""Auxiliary heads: map target features to one source's label space."""

import keras
from keras import layers, ops

from sskt_tf.targets.layers import conv_bn_layers

HEAD_KINDS = ("linear", "transfer")


def _as_list(features):
    return list(features) if isinstance(features, (list, tuple)) else [features]


def _pool(feature):
    """Global average pool of a 4-D (image) or 5-D (clip) feature map; 2-D features pass through."""
    return ops.mean(feature, axis=tuple(range(1, len(feature.shape) - 1)))


@keras.saving.register_keras_serializable(package="sskt_tf")
class LinearHead(layers.Layer):
    """``Dense(num_classes)`` on the target's pooled final features.

    Args:
        num_classes: size of the source's label space.

    Call args:
        features: a tensor or a one-element list; 4-D and 5-D maps are average-pooled.

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


def _conv_bn_relu(filters, kernel_size, strides, name, rank):
    # 3-D branches pad strided convs symmetrically, as the original's padding=1 does. 2-D branches keep
    # Keras "same" padding (bottom/right on even sizes), which every saved 2-D model was trained with.
    symmetric = rank == 3
    layer_list = conv_bn_layers(filters, kernel_size, strides, name=name, symmetric_padding=symmetric, rank=rank)
    return [*layer_list, layers.ReLU(name=f"{name}_relu")]


@keras.saving.register_keras_serializable(package="sskt_tf")
class TransferModule(layers.Layer):
    """SSKT transfer module: one bottleneck branch per tapped target stage.

    Each branch is ``[1x1 conv to B, BN, ReLU; 3x3 conv stride 2 to B, BN,
    ReLU; 1x1 conv to C, BN, ReLU]`` followed by global average pooling. The
    branch outputs are averaged (not concatenated) and classified by
    ``Dense(num_classes)``. On 5-D clip features the convs are 3-D
    (1x1x1, 3x3x3, 1x1x1), as in the paper's video experiments
    (:class:`TransferModule3D` has that module's widths). Strided convs pad
    symmetrically, as PyTorch does.

    Args:
        num_classes: size of the source's label space.
        width: ``C``; default: the channel count of the last feature map.
        bottleneck_width: ``B``; default ``C // 2``.

    Call args:
        features: list of stage outputs ``b_1 .. b_n`` of the target, all
            4-D ``[batch, H, W, C_i]`` or all 5-D ``[batch, T, H, W, C_i]``.

    Returns:
        Logits ``[batch, num_classes]``.

    Example:
        >>> head = TransferModule(365)
        >>> maps = [keras.ops.zeros((2, 32, 32, 16)), keras.ops.zeros((2, 8, 8, 64))]
        >>> head(maps).shape
        (2, 365)
    """

    def __init__(self, num_classes, width=None, bottleneck_width=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.width = None if width is None else int(width)
        self.bottleneck_width = None if bottleneck_width is None else int(bottleneck_width)
        self.branches = []
        self.dense = layers.Dense(self.num_classes, name="logits", dtype="float32")

    def _check_ranks(self, shapes):
        ranks = {len(shape) for shape in shapes}
        if len(ranks) != 1 or not ranks <= {4, 5}:
            raise ValueError(
                f"{type(self).__name__} needs stage outputs that are all 4-D (images) or all 5-D (clips), "
                f"got shapes {[tuple(shape) for shape in shapes]}."
            )
        return ranks.pop()

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        rank = self._check_ranks(shapes) - 2
        width = self.width or int(shapes[-1][-1])
        bottleneck = self.bottleneck_width or max(width // 2, 1)
        self.width, self.bottleneck_width = width, bottleneck
        for index, shape in enumerate(shapes):
            prefix = f"branch{index + 1}"
            branch = (
                _conv_bn_relu(bottleneck, 1, 1, f"{prefix}_reduce", rank)
                + _conv_bn_relu(bottleneck, 3, 2, f"{prefix}_down", rank)
                + _conv_bn_relu(width, 1, 1, f"{prefix}_expand", rank)
            )
            sequential = keras.Sequential(branch, name=prefix)
            sequential.build(tuple(shape))
            self.branches.append(sequential)
        self.dense.build((shapes[0][0], width))

    def call(self, features, training=None):
        features = _as_list(features)
        pooled = [_pool(branch(feature, training=training)) for feature, branch in zip(features, self.branches)]
        return self.dense(ops.mean(ops.stack(pooled, axis=0), axis=0))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, width=self.width, bottleneck_width=self.bottleneck_width)
        return config


@keras.saving.register_keras_serializable(package="sskt_tf")
class TransferModule3D(TransferModule):
    """The transfer module of the paper's video experiments, on 5-D clip features.

    Branches ``[1x1x1 conv to 500, BN, ReLU; 3x3x3 conv stride 2 to 500, BN,
    ReLU; 1x1x1 conv to 1000, BN, ReLU]``, pooled and averaged, then
    ``Dense(num_classes)``: the original's widths, whatever the stage widths.

    Args:
        num_classes: size of the source's label space.
        width: output width of each branch (the original's 1000).
        bottleneck_width: inner width of each branch (the original's 500).

    Example:
        >>> head = TransferModule3D(1000, width=8, bottleneck_width=4)
        >>> maps = [keras.ops.zeros((2, 8, 28, 28, 64)), keras.ops.zeros((2, 1, 4, 4, 512))]
        >>> head(maps).shape
        (2, 1000)
    """

    def __init__(self, num_classes, width=1000, bottleneck_width=500, **kwargs):
        super().__init__(num_classes, width=width, bottleneck_width=bottleneck_width, **kwargs)

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        if self._check_ranks(shapes) != 5:
            raise ValueError(f"TransferModule3D needs 5-D clip features, got shapes {[tuple(s) for s in shapes]}.")
        super().build(input_shape)


def build(kind, num_classes, name=None, video=False, width=None):
    """Creates an auxiliary head by kind.

    Args:
        kind: ``"linear"`` or ``"transfer"``.
        num_classes: size of the source's label space.
        name: layer name.
        video: the target takes clips: ``"transfer"`` is a :class:`TransferModule3D`.
        width: the transfer module's branch width ``C`` (inner width ``C // 2``);
            None: its default.

    Returns:
        A ``LinearHead``, ``TransferModule`` or ``TransferModule3D``.
    """
    if kind == "linear":
        return LinearHead(num_classes, name=name)
    if kind == "transfer":
        if not video:
            return TransferModule(num_classes, width=width, name=name)
        if width is None:
            return TransferModule3D(num_classes, name=name)
        return TransferModule3D(num_classes, width=width, bottleneck_width=max(width // 2, 1), name=name)
    raise ValueError(f"Unknown head {kind!r}; choose one of {', '.join(HEAD_KINDS)}.")
