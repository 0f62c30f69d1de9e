"""Video training from the command line: a video folder with a 2D .keras source, tfds ucf101, clear refusals."""

import dataclasses
import json

import keras
import pytest
from helpers.in_process import run_script
from helpers.moving_digits import DIRECTIONS, moving_digits
from helpers.video_files import write_video_folder

from sskt_tf import TrainConfig
from sskt_tf.errors import ConfigError
from sskt_tf.training import train

# Every test here trains, or builds the module's video folder and its source.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A video_folder of moving digits (.avi train, frame-folder val) and a 2D frame source saved as .keras."""
    root = tmp_path_factory.mktemp("video_cli")
    train_x, train_y = moving_digits(16, frames=20, seed=0)
    write_video_folder(str(root / "videos"), train_x, train_y, DIRECTIONS, "train")
    val_x, val_y = moving_digits(4, frames=40, seed=1)
    write_video_folder(str(root / "videos"), val_x, val_y, DIRECTIONS, "val", kind="frames")
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))
    keras.Model(inputs, keras.layers.Dense(10)(pooled)).save(str(root / "frames.keras"))
    return root


VIDEO_FLAGS = [
    "--target=resnet3d10",
    "--image_size=32",
    "--video_short_side=32",
    "--batch_size=4",
    "--epochs=2",
    "--lr=0.01",
    "--verbose=2",
]


def test_cli_trains_sskt_on_a_video_folder_and_reports_video_accuracy(videos):
    model_dir = videos / "run"
    result = run_script(
        [
            "tools/train.py",
            f"--dataset=video_folder:{videos / 'videos'}",
            f"--sources={videos / 'frames.keras'}",
            "--head_width=16",
            f"--model_dir={model_dir}",
            *VIDEO_FLAGS,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert results["class_names"] == ["down", "left", "right", "up"] and results["sources"] == ["frames"]
    assert results["train_examples"] == 16 and 0.0 <= results["video_accuracy"] <= 1.0
    assert 0.0 <= results["all_clips_accuracy"] <= 1.0 and results["aux_frames_loss"] > 0
    assert "16 frames of 32x32" in result.stderr and "video accuracy" in result.stderr
    best = keras.saving.load_model(model_dir / "best.keras", compile=False)
    assert best.input_shape == (None, 16, 32, 32, 3)


def test_cli_trains_on_tfds_ucf101(tmp_path):
    model_dir = tmp_path / "ucf"
    result = run_script(
        [
            "tests/helpers/mock_tfds_train.py",
            "8",
            "--dataset=ucf101/ucf101_1",
            "--method=scratch",
            "--clip_length=8",
            f"--model_dir={model_dir}",
            *VIDEO_FLAGS,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert results["num_classes"] == 101 and results["video_accuracy"] is not None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(target="resnet20"), "--target=resnet20 takes images, but video_folder:.* holds videos"),
        (dict(soft_label_cache="cache"), "video datasets train with their sources online"),
        (dict(video_split="nowhere/trainlist01.txt"), "nowhere/trainlist01.txt' does not exist"),
        (dict(clip_length=0), "--clip_length=0: must be >= 1"),
    ],
)
def test_bad_video_settings_are_clear_errors(videos, tmp_path, overrides, message):
    config = TrainConfig(
        dataset=f"video_folder:{videos / 'videos'}",
        target="resnet3d10",
        sources=[],
        method="scratch" if "soft_label_cache" not in overrides else "sskt",
        image_size=32,
        batch_size=4,
        epochs=1,
        model_dir=str(tmp_path / "run"),
    )
    with pytest.raises(ConfigError, match=message):
        train(dataclasses.replace(config, **overrides))


def test_a_video_target_on_images_is_refused(tmp_path, digits_folder):
    config = TrainConfig(dataset=f"folder:{digits_folder}", target="resnet3d18", method="scratch", sources=[], epochs=1)
    with pytest.raises(ConfigError, match="--target=resnet3d18 takes clips, but folder:.* holds images"):
        train(dataclasses.replace(config, model_dir=str(tmp_path / "run")))


@pytest.mark.torch
def test_cli_fine_tunes_from_a_hara_kinetics_checkpoint(videos, tmp_path):
    import numpy as np
    from torch_resnet3d import random_resnet3d, save_like_hara

    from sskt_tf.sources import torch_checkpoint

    checkpoint = tmp_path / "resnet-10-kinetics.pth"
    save_like_hara(random_resnet3d(10, 400, seed=3), checkpoint, arch="resnet-10")
    model_dir = tmp_path / "fine_tuned"
    result = run_script(
        [
            "tools/train.py",
            f"--dataset=video_folder:{videos / 'videos'}",
            "--method=dml",
            f"--pretrained={checkpoint}",
            "--train_from=layer4",
            f"--model_dir={model_dir}",
            *VIDEO_FLAGS,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "layers copied" in result.stderr and "frozen before layer4" in result.stderr
    kinetics = torch_checkpoint.convert(str(checkpoint))
    trained = keras.saving.load_model(model_dir / "last.keras", compile=False)
    for name in ("conv1", "bn1", "layer3.0.conv2", "layer3.0.bn2"):  # frozen: the checkpoint's, BN statistics too
        for ours, theirs in zip(trained.get_layer(name).weights, kinetics.get_layer(name).weights):
            np.testing.assert_array_equal(np.array(ours), np.array(theirs))
    changed = trained.get_layer("layer4.0.conv1").kernel
    assert not np.allclose(np.array(changed), np.array(kinetics.get_layer("layer4.0.conv1").kernel))
    assert trained.get_layer("fc").kernel.shape == (512, 4)
