"""Video SSKT models: Hara's 3D ResNets, the 3D transfer module, sources on the centre frame, methods on clips."""

import keras
import numpy as np
import pytest
from helpers.moving_digits import DIRECTIONS, moving_digits

from sskt_tf import SSKTModel, sources, targets
from sskt_tf.errors import ConfigError
from sskt_tf.methods import heads
from sskt_tf.targets.layers import ZeroPadShortcut
from sskt_tf.targets.resnet3d import resnet3d

TINY_WIDTHS = (4, 8, 8, 16)


def trainable_count(layer):
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def test_resnet3d18_matches_hara_layout():
    model = targets.get("resnet3d18", 400, image_size=112)
    assert trainable_count(model) == 33_235_280  # Hara's resnet-18, shortcut A, 400 classes
    stages = [model.get_layer(f"layer{i}").output.shape[1:] for i in range(1, 5)]
    assert stages == [(8, 28, 28, 64), (4, 14, 14, 128), (2, 7, 7, 256), (1, 4, 4, 512)]
    assert targets.is_video("resnet3d18") and not targets.is_video("resnet18")


def test_shortcut_b_adds_projections_and_a_zero_pads_after():
    a = resnet3d(10, 5, (8, 32, 32, 3), shortcut="A", stage_widths=TINY_WIDTHS)
    b = resnet3d(10, 5, (8, 32, 32, 3), shortcut="B", stage_widths=TINY_WIDTHS)
    assert a.get_layer("layer2.0.downsample").weights == []
    assert b.get_layer("layer2.0.downsample.0").kernel.shape == (1, 1, 1, 4, 8)
    x = np.arange(2 * 4 * 4 * 4 * 2, dtype="float32").reshape(2, 4, 4, 4, 2)
    y = np.asarray(ZeroPadShortcut(3, zeros_after=True)(x))
    np.testing.assert_array_equal(y[..., :2], x[:, ::2, ::2, ::2, :])
    assert y.shape == (2, 2, 2, 2, 5) and np.all(y[..., 2:] == 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(depth=50), "depth must be one of"),
        (dict(shortcut="C"), "shortcut must be A or B"),
        (dict(input_shape=(32, 32, 3)), "takes clips"),
    ],
)
def test_bad_resnet3d_arguments_are_clear_errors(kwargs, message):
    arguments = {**dict(depth=18, num_classes=5, input_shape=(16, 32, 32, 3)), **kwargs}
    with pytest.raises(ConfigError, match=message):
        resnet3d(**arguments)


def test_transfer_module_3d_has_the_original_widths_and_averages_branches():
    head = heads.build("transfer", 7, video=True)
    assert isinstance(head, heads.TransferModule3D)
    maps = [np.random.rand(2, 4, 8, 8, 3).astype("float32"), np.random.rand(2, 1, 2, 2, 5).astype("float32")]
    out = head(maps)
    assert out.shape == (2, 7) and head.width == 1000 and head.bottleneck_width == 500
    kernels = [layer.kernel.shape for layer in head.branches[0].layers if hasattr(layer, "kernel")]
    assert kernels == [(1, 1, 1, 3, 500), (3, 3, 3, 500, 500), (1, 1, 1, 500, 1000)]
    pooled = [keras.ops.mean(branch(m), axis=(1, 2, 3)) for branch, m in zip(head.branches, maps)]
    np.testing.assert_allclose(out, head.dense((pooled[0] + pooled[1]) / 2), atol=1e-5)
    with pytest.raises(ValueError, match="5-D clip features"):
        heads.TransferModule3D(3)([np.zeros((2, 4, 4, 3), "float32")])


def test_a_source_sees_the_centre_frame_of_a_clip():
    inputs = keras.Input((8, 8, 3))
    frame_model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    source = sources.Source(frame_model, "frame")
    clips = np.random.RandomState(0).uniform(0, 255, (2, 5, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(source(clips), source(clips[:, 2]), atol=1e-5)  # frame T // 2 = 2


def _clip_target():
    return resnet3d(10, len(DIRECTIONS), (16, 32, 32, 3), stage_widths=TINY_WIDTHS)


def test_sskt_model_on_clips_builds_3d_heads_and_trains_a_step():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    frame_source = keras.Model(inputs, keras.layers.Dense(6)(keras.layers.GlobalAveragePooling2D()(inputs)))
    model = SSKTModel(_clip_target(), [sources.Source(frame_source, "frame")], head_width=8)
    assert isinstance(model.heads[0], heads.TransferModule3D) and model.heads[0].width == 8
    model.compile(keras.optimizers.SGD(0.01), metrics=["accuracy"])
    clips, labels = moving_digits(8, seed=0)
    logs = model.train_on_batch(clips.astype("float32"), labels, return_dict=True)
    assert np.isfinite(logs["aux_frame_loss"]) and logs["aux_frame_loss"] > 0
    assert model.predict(clips.astype("float32"), verbose=0).shape == (8, len(DIRECTIONS))


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    """Moving-digit clips (class = direction of motion) and a 2D .keras source that sees single frames."""
    train = moving_digits(512, seed=0)
    val = moving_digits(128, seed=1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(keras.layers.Rescaling(1 / 255.0)(inputs))
    frame_model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    path = str(tmp_path_factory.mktemp("source") / "frames.keras")
    frame_model.save(path)
    return train, val, path


def test_single_frames_of_moving_digits_do_not_tell_the_class():
    from sklearn.linear_model import LogisticRegression

    (train_x, train_y), (val_x, val_y) = moving_digits(768, seed=0), moving_digits(512, seed=1)
    for frame in (0, 8, 15):
        classifier = LogisticRegression(max_iter=200).fit(train_x[:, frame, ..., 0].reshape(768, -1) / 255.0, train_y)
        assert classifier.score(val_x[:, frame, ..., 0].reshape(512, -1) / 255.0, val_y) < 0.33  # chance: 0.25


@pytest.mark.slow
@pytest.mark.parametrize("with_source", [False, True], ids=["scratch", "sskt"])
def test_a_3d_resnet_learns_motion_that_no_single_frame_shows(moving, with_source):
    (train_x, train_y), (val_x, val_y), source_path = moving
    keras.utils.set_random_seed(0)
    model_sources = [sources.from_file(source_path)] if with_source else []
    model = SSKTModel(_clip_target(), model_sources, head_width=8)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([6 * 16], [0.05, 0.005])  # x0.1 after 6 epochs
    model.compile(keras.optimizers.SGD(schedule, momentum=0.9), metrics=["accuracy"])
    history = model.fit(train_x.astype("float32"), train_y, batch_size=32, epochs=8, verbose=0)
    accuracy = model.evaluate(val_x.astype("float32"), val_y, return_dict=True, verbose=0)["accuracy"]
    print(f"moving digits ({'SSKT' if with_source else 'scratch'}) validation accuracy: {accuracy:.4f}")
    assert accuracy > 0.8, accuracy  # chance: 0.25
    if with_source:
        aux = history.history["aux_frames_loss"]
        assert np.all(np.isfinite(aux)) and aux[-1] < aux[0]
