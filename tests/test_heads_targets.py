"""Auxiliary heads and target networks: shapes, parameter counts, names, serialisation."""

import keras
import numpy as np
import pytest
from helpers import plugins

from sskt_tf import targets
from sskt_tf.errors import ConfigError
from sskt_tf.methods import heads
from sskt_tf.targets.layers import ZeroPadShortcut


def trainable_count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def test_linear_head_shape_and_parameters():
    head = heads.LinearHead(1000)
    out = head(keras.ops.zeros((4, 64)))
    assert out.shape == (4, 1000)
    assert trainable_count(head) == 64 * 1000 + 1000
    assert head([keras.ops.zeros((4, 8, 8, 64))]).shape == (4, 1000)  # pools maps


def _conv_bn(cin, cout, k):
    return k * k * cin * cout + 2 * cout


def test_transfer_module_matches_design_parameter_count():
    # CIFAR ResNet stages: 16, 32, 64 channels; C = 64 (last stage), C/2 = 32.
    head = heads.TransferModule(365)
    maps = [keras.ops.zeros((2, 32, 32, 16)), keras.ops.zeros((2, 16, 16, 32)), keras.ops.zeros((2, 8, 8, 64))]
    assert head(maps).shape == (2, 365)
    expected = (
        sum(_conv_bn(c, 32, 1) + _conv_bn(32, 32, 3) + _conv_bn(32, 64, 1) for c in (16, 32, 64)) + 64 * 365 + 365
    )
    assert trainable_count(head) == expected
    assert len(head.branches) == 3


def test_transfer_module_averages_branches():
    head = heads.TransferModule(3, width=4)
    maps = [np.random.rand(2, 8, 8, 4).astype("float32"), np.random.rand(2, 4, 4, 4).astype("float32")]
    out = head(maps)
    pooled = [keras.ops.mean(b(m), axis=(1, 2)) for b, m in zip(head.branches, maps)]
    expected = head.dense((pooled[0] + pooled[1]) / 2)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("layer", [heads.LinearHead(7), heads.TransferModule(7, width=8)])
def test_heads_serialise(layer):
    config = keras.saving.serialize_keras_object(layer)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(layer) and restored.num_classes == 7


def test_unknown_head_kind():
    with pytest.raises(ValueError, match="Unknown head 'mlp'"):
        heads.build("mlp", 10)


@pytest.mark.parametrize("depth,params", [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)])
def test_cifar_resnet_standard_parameter_counts(depth, params):
    # 0.27M, 0.46M, 0.66M, 0.85M, 1.7M: the counts of He et al.'s option-A CIFAR ResNets.
    model = targets.cifar_resnet(depth, num_classes=10)
    assert trainable_count(model) == params


def test_cifar_resnet_stage_outputs_are_named_and_shaped():
    model = targets.get("resnet20", 10)
    shapes = [tuple(model.get_layer(f"stage{i}").output.shape[1:]) for i in (1, 2, 3)]
    assert shapes == [(32, 32, 16), (16, 16, 32), (8, 8, 64)]
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


def test_option_a_shortcut_has_no_weights_and_zero_pads():
    model = targets.get("resnet20", 10)
    shortcut = model.get_layer("stage2_block1_shortcut")
    assert shortcut.weights == []
    x = np.arange(2 * 4 * 4 * 2, dtype="float32").reshape(2, 4, 4, 2)
    y = np.asarray(ZeroPadShortcut(2)(x))
    np.testing.assert_array_equal(y[..., 1:3], x[:, ::2, ::2, :])
    assert np.all(y[..., 0] == 0) and np.all(y[..., 3] == 0)


def test_vgg16_stages_and_size():
    model = targets.get("vgg16", 100)
    assert [model.get_layer(f"stage{i}").output.shape[-1] for i in range(1, 6)] == [64, 128, 256, 512, 512]
    assert model.output_shape == (None, 100)


def test_target_normalises_raw_pixels():
    model = targets.get("resnet20", 10, mean=(100.0, 100.0, 100.0), std=(50.0, 50.0, 50.0))
    normalised = model.get_layer("normalize")(np.full((1, 2, 2, 3), 150.0, "float32"))
    np.testing.assert_allclose(normalised, 1.0, atol=1e-5)


@pytest.fixture
def own_target():
    """A target registered from outside the package, as a user's module would."""
    with plugins.own_target() as network:
        yield network


def test_a_registered_target_is_built_validated_and_tapped_by_name(own_target, digits_folder):
    from sskt_tf import training
    from sskt_tf.training.config import TrainConfig

    model = targets.get("own_net", 3, image_size=16)
    assert model.output_shape == (None, 3) and targets.default_feature_layers(model, "transfer") == ["stage1"]
    assert "own_net" in targets.names() and "own_net" not in targets.TARGETS  # TARGETS: the package's own
    assert not targets.is_video("own_net") and targets.is_video("resnet3d18")
    config = TrainConfig(dataset=f"folder:{digits_folder}", target="own_net", method="scratch")
    assert training.validate(config).target == "own_net"
    with pytest.raises(ValueError, match="registered twice"):
        targets.register(own_target)


def test_an_unknown_target_lists_every_registered_one():
    with pytest.raises(ConfigError, match="Unknown --target=resnet21; choose one of resnet20, .*, resnet3d34"):
        targets.get("resnet21", 10)
    assert targets.names(takes_clips=True) == targets.VIDEO_TARGETS == ("resnet3d10", "resnet3d18", "resnet3d34")
