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
    clip_inputs = keras.Input((5, 8, 8, 3))
    clip_model = keras.Model(clip_inputs, keras.layers.Dense(4)(keras.layers.Flatten()(clip_inputs)))
    clip_source = sources.Source(clip_model, "clip_teacher")  # a 3-D KD teacher sees whole clips
    np.testing.assert_allclose(clip_source(clips), clip_model(clips), atol=1e-5)


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
    keras.utils.set_random_seed(0)  # the same source in every run, whatever ran before
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


def _baseline(name):
    from sskt_tf.methods.dml import DMLModel
    from sskt_tf.methods.kd import KDModel
    from sskt_tf.methods.maxl import MAXLModel

    if name == "kd":
        return KDModel(_clip_target(), sources.Source(_clip_target(), "teacher"))  # a clip teacher sees whole clips
    if name == "dml":
        return DMLModel(_clip_target(), _clip_target())
    generator = resnet3d(10, len(DIRECTIONS) * 2, (16, 32, 32, 3), stage_widths=TINY_WIDTHS)
    return MAXLModel(_clip_target(), generator, psi=2)


@pytest.mark.parametrize("method", ["kd", "dml", "maxl"])
def test_every_baseline_trains_on_clips(method):
    keras.utils.set_random_seed(0)
    model = _baseline(method)
    model.compile(keras.optimizers.SGD(0.01), metrics=["accuracy"])
    clips, labels = moving_digits(8, seed=0)
    before = [np.array(w) for w in model.target.trainable_weights]
    logs = model.train_on_batch(clips.astype("float32"), labels, return_dict=True)
    assert all(np.isfinite(value) for value in logs.values()), logs
    assert any(not np.allclose(a, np.array(b)) for a, b in zip(before, model.target.trainable_weights))
    assert model.predict(clips.astype("float32"), verbose=0).shape == (8, len(DIRECTIONS))


def test_fine_tuning_trains_only_from_the_given_stage_and_keeps_frozen_batch_norm_statistics(tmp_path):
    from sskt_tf.training.pretrained import start_from

    keras.utils.set_random_seed(0)
    kinetics_like = resnet3d(10, 7, (16, 32, 32, 3), stage_widths=TINY_WIDTHS)  # another class count
    for layer in kinetics_like.layers:  # distinctive weights and BN statistics
        layer.set_weights([np.random.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()])
    path = str(tmp_path / "kinetics_like.keras")
    kinetics_like.save(path)
    target = _clip_target()
    start_from([target], path, train_from="layer4")
    pretrained = {layer.name: [np.array(w) for w in layer.weights] for layer in kinetics_like.layers}
    before = {layer.name: [np.array(w) for w in layer.weights] for layer in target.layers}
    model = SSKTModel(target, [])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
    clips, labels = moving_digits(16, seed=0)
    model.fit(clips.astype("float32"), labels, batch_size=8, epochs=1, verbose=0)
    for layer in target.layers:
        if not layer.weights:
            continue
        after = [np.array(w) for w in layer.weights]
        if layer.name == "fc":  # 4 classes, not 7: fresh, and trained
            assert after[0].shape == (16, 4) and not np.allclose(after[0], before["fc"][0])
        elif layer.name.startswith("layer4."):  # copied, then trained (BN statistics too)
            assert all(a.shape == p.shape for a, p in zip(before[layer.name], pretrained[layer.name]))
            assert not all(np.allclose(a, b) for a, b in zip(after, before[layer.name])), layer.name
        else:  # frozen: the pretrained weights and BatchNorm statistics, unchanged by fit
            assert all(np.array_equal(a, p) for a, p in zip(after, pretrained[layer.name])), layer.name
    assert sum(1 for layer in target.layers if layer.trainable and layer.weights) == sum(
        1 for layer in target.layers if layer.weights and (layer.name.startswith("layer4.") or layer.name == "fc")
    )


def test_bad_fine_tuning_settings_are_clear_errors(tmp_path):
    from sskt_tf.training.pretrained import freeze_before, load_pretrained, pretrained_network

    with pytest.raises(ConfigError, match="--pretrained=.*nowhere.keras does not exist"):
        pretrained_network(str(tmp_path / "nowhere.keras"))
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="--pretrained .*broken.keras. is not a .keras archive"):
        pretrained_network(str(tmp_path / "broken.keras"))
    with pytest.raises(ConfigError, match="--train_from=layer9: resnet3d10 has no such layer"):
        freeze_before(_clip_target(), "layer9")
    with pytest.raises(ConfigError, match="shares no layer"):
        load_pretrained(_clip_target(), targets.get("resnet20", 4))


def test_a_video_target_exports_a_signature_that_takes_uint8_clips(tmp_path):
    import tensorflow as tf

    from sskt_tf.training.export import export_run, export_saved_model

    keras.utils.set_random_seed(0)
    target = _clip_target()
    path = export_saved_model(target, str(tmp_path / "export"), class_names=list(DIRECTIONS))
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default"}
    clips, _ = moving_digits(3, seed=2)
    outputs = loaded.signatures["serving_default"](clips=tf.constant(clips))
    expected = keras.ops.softmax(target(clips.astype("float32"), training=False))
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    assert outputs["class_names"].shape == (3,)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"clips. must be uint8 RGB pixels of shape \[batch, 16"):
        loaded.signatures["serving_default"](clips=tf.zeros((1, 8, 32, 32, 3), tf.uint8))
    target.save(str(tmp_path / "best.keras"))
    with pytest.raises(ConfigError, match="TFLite has no built-in 3D max-pool"):
        export_run(str(tmp_path), str(tmp_path / "tflite"), export_format="tflite")
