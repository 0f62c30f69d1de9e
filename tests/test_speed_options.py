"""XLA, mixed precision, soft labels in the batch, optional validation of the heads, and the benchmark tool."""

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.in_process import run_script

from sskt_tf import SSKTModel, TrainConfig, sources, targets, training
from sskt_tf.errors import ConfigError


@pytest.fixture()
def batch(digits):
    train_x, train_y, _, _ = digits
    return train_x[:64].astype("float32"), train_y[:64]


def _small_target():
    """Two conv-BN-ReLU stages, pooling and logits: cheap to compile with XLA."""
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for stage, strides in ((1, 1), (2, 2)):
        x = keras.layers.Conv2D(8 * stage, 3, strides=strides, padding="same", name=f"conv{stage}")(x)
        x = keras.layers.ReLU(name=f"stage{stage}")(keras.layers.BatchNormalization(name=f"bn{stage}")(x))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="small")


def _model(tiny_source_path, policy="float32", small=False, **compile_kwargs):
    keras.utils.set_random_seed(11)
    with training.dtype_policy(policy):
        target = _small_target() if small else targets.get("resnet20", 10, image_size=16)
        model = SSKTModel(target, [sources.from_file(tiny_source_path)])
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), weight_decay=5e-4, **compile_kwargs)
    return model


@pytest.mark.slow
def test_xla_step_matches_the_plain_step(tiny_source_path, batch):
    x, y = batch
    plain_model = _model(tiny_source_path, small=True, jit_compile=False)
    xla_model = _model(tiny_source_path, small=True, jit_compile=True)
    plain = plain_model.train_on_batch(x, y, return_dict=True)
    xla = xla_model.train_on_batch(x, y, return_dict=True)
    # Keras falls back to the plain step, silently, where XLA cannot compile it: it did not here.
    assert xla_model.jit_compile is True and plain_model.jit_compile is False
    hlo = tf.function(xla_model.train_step, jit_compile=True).experimental_get_compiler_ir((x, y))(stage="hlo")
    assert "ENTRY" in hlo and "convolution" in hlo
    for name in ("loss", "target_loss", "aux_tiny_loss"):
        assert xla[name] == pytest.approx(plain[name], rel=1e-4), name
    # The update itself: every weight after the step equal.
    for a, b in zip(plain_model.weights, xla_model.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.slow
def test_mixed_precision_keeps_float32_variables_logits_and_losses(tiny_source_path, batch, policy):
    x, y = batch
    model = _model(tiny_source_path, policy)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the block
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")  # loss scaling only where float16 needs it
    assert model.target.get_layer("stem_conv").compute_dtype == policy.split("_")[1]
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # The target's and the heads' final Dense layers compute in float32 (stable softmax).
    assert all(output.dtype == "float32" for output in model._forward(x[:2], training=False))


@pytest.mark.slow
def test_batches_can_carry_the_soft_labels(tiny_source_path, batch):
    x, y = batch
    online = _model(tiny_source_path)
    given = _model(tiny_source_path)
    soft = online.sources[0](x).numpy()
    a = online.train_on_batch(x, y, return_dict=True)
    b = given.train_on_batch({"images": x, "soft_labels": (soft,)}, y, return_dict=True)
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-6) and b["aux_tiny_loss"] == pytest.approx(
        a["aux_tiny_loss"], rel=1e-6
    )
    with pytest.raises(ConfigError, match="soft labels of 2 sources for 1 auxiliary heads"):
        given.train_on_batch({"images": x, "soft_labels": (soft, soft)}, y)


@pytest.mark.slow
def test_validation_without_the_sources(tiny_source_path, batch):
    x, y = batch
    with_aux = _model(tiny_source_path).evaluate(x, y, return_dict=True, verbose=0)
    without = _model(tiny_source_path, val_aux_losses=False).evaluate(x, y, return_dict=True, verbose=0)
    assert "aux_tiny_loss" in with_aux and "aux_tiny_loss" not in without
    assert without["target_loss"] == pytest.approx(with_aux["target_loss"], rel=1e-6)
    assert without["loss"] < with_aux["loss"]  # no alpha * aux term


def test_unknown_precision_is_refused():
    with pytest.raises(ConfigError, match="--mixed_precision=float8"):
        training.validate(TrainConfig(mixed_precision="float8", sources=[]))


@pytest.mark.slow
@pytest.mark.torch
def test_benchmark_prints_one_json_line_per_configuration(tiny_source_path):
    result = run_script(
        [
            "benchmarks/benchmark.py",
            "--configs=scratch,sskt_online_1,sskt_cached,torch_scratch,inference",
            "--jit_compile=false",
            f"--sources={tiny_source_path},{tiny_source_path}",
            "--image_size=16",
            "--batch_size=16",
            "--steps=2",
            "--warmup=1",
            "--head=linear",
            "--markdown",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["config"] for line in lines] == [
        "scratch",
        "sskt_online_1",
        "sskt_cached",
        "torch_scratch",
        "inference",
    ]
    for line in lines:
        assert {"config", "jit_compile", "batch_size", "images_per_second", "step_ms", "peak_memory_mb"} <= set(line)
        assert line["batch_size"] == 16 and line["images_per_second"] > 0 and line["peak_memory_mb"] > 0
        assert line["images_per_second"] == pytest.approx(16 / (line["step_ms"] / 1000), rel=0.01)
    assert [line["head"] for line in lines] == [None, "linear", "linear", None, None]
    assert [len(line["sources"]) for line in lines] == [0, 1, 2, 0, 0]
    assert lines[-1]["target_parameters"] == targets.get("resnet20", 10, image_size=16).count_params()
    assert "| sskt_cached | off | float32 |" in result.stdout
    bad = run_script(["benchmarks/benchmark.py", "--configs=warp_drive"])
    assert bad.returncode == 2 and "Unknown --configs entry 'warp_drive'" in bad.stderr


@pytest.mark.slow
@pytest.mark.torch
def test_benchmark_measures_the_video_step_beside_pytorch(tiny_source_path, tmp_path):
    other_source = shutil.copy(tiny_source_path, tmp_path / "other_tiny.keras")  # sources need distinct names
    result = run_script(
        [
            "benchmarks/benchmark.py",
            "--configs=video_scratch,video_sskt_online_2,torch_video_sskt_online_2",
            f"--sources={tiny_source_path},{other_source}",
            "--jit_compile=false",
            "--clip_length=4",
            "--clip_size=32",
            "--video_source_size=32",
            "--batch_size=2",
            "--num_classes=5",
            "--steps=1",
            "--warmup=1",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["config"] for line in lines] == ["video_scratch", "video_sskt_online_2", "torch_video_sskt_online_2"]
    assert all(line["examples"] == "clips" and line["target"] == "resnet3d18" for line in lines)
    assert [len(line["sources"]) for line in lines] == [0, 2, 2]
    assert all(line["images_per_second"] > 0 for line in lines)
