"""tools/train.py end to end (tfds mocked, and a user's image folder) and its errors."""

import csv
import dataclasses
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tomllib
from helpers.in_process import run_entry_point, run_script
from helpers.processes import REPO

from sskt_tf import training
from sskt_tf.errors import ConfigError
from sskt_tf.training.config import TrainConfig


def _history_rows(model_dir):
    with open(os.path.join(model_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def _tensorboard_steps(log_dir, tag):
    """The steps at which TensorBoard event files under ``log_dir`` hold a summary named ``tag``."""
    steps = []
    for name in sorted(os.listdir(log_dir)):
        for event in tf.compat.v1.train.summary_iterator(str(log_dir / name)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


@pytest.mark.slow
@pytest.mark.torch
def test_cli_with_mock_tfds_and_the_cifar10_flagfile(tmp_path):
    # README's flow: convert the CSAIL Places365 checkpoint into ~/.keras/models with one
    # command, then train with the unchanged flagfile's P+I sources. The checkpoint is a
    # random-weight ResNet-50 saved the CSAIL way; the ImageNet ResNet-50 has random
    # weights too (no downloads here).
    from torch_reference import random_resnet, save_like_csail

    keras_home = tmp_path / "keras_home"
    checkpoint = tmp_path / "resnet50_places365.pth.tar"
    save_like_csail(random_resnet("resnet50", 365), checkpoint, "resnet50")
    converted = run_script(
        [
            "tools/convert_torch_resnet.py",
            f"--checkpoint={checkpoint}",
            "--arch=resnet50",
            "--num_classes=365",
            f"--output={keras_home / 'models' / 'resnet50_places365.keras'}",
        ]
    )
    assert converted.returncode == 0, converted.stderr[-3000:]
    model_dir = tmp_path / "run"
    result = run_script(
        [
            "tests/helpers/mock_tfds_train.py",
            "48",
            "--flagfile=configs/cifar10.flags",
            "--source_weights=none",
            "--epochs=2",
            "--batch_size=16",
            "--lr_milestones=1",
            "--verbose=2",
            f"--model_dir={model_dir}",
        ],
        env={"KERAS_HOME": str(keras_home)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Source places365_resnet50: 365 classes at (74, 74) input" in result.stderr
    rows = _history_rows(model_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert {
        "loss",
        "target_loss",
        "aux_places365_resnet50_loss",
        "aux_imagenet_resnet50_loss",
        "accuracy",
        "val_accuracy",
        "val_loss",
        "learning_rate",
    } <= set(rows[0])
    assert [float(row["learning_rate"]) for row in rows] == pytest.approx([0.1, 0.02])
    results = json.loads((model_dir / "results.json").read_text())
    assert 0.0 <= results["val_accuracy"] <= 1.0 and np.isfinite(results["val_loss"])
    assert results["epochs"] == 2 and results["sources"] == ["places365_resnet50", "imagenet_resnet50"]
    # One epoch numbering, from 1, in every file the run writes and in its log.
    best_epoch = json.loads((model_dir / "best.json").read_text())["epoch"]
    assert results["best_epoch"] == best_epoch and best_epoch in (1, 2)
    assert f"at epoch {best_epoch}). Results in" in result.stderr
    for split in ("train", "validation"):
        assert _tensorboard_steps(model_dir / "tensorboard" / split, "epoch_loss") == [1, 2]
    best = keras.saving.load_model(model_dir / "best.keras")
    assert best.name == "resnet20" and best.output_shape == (None, 10)
    assert best.count_params() == results["target_parameters"]  # no source or head weights inside
    flags_text = (model_dir / "flags.txt").read_text()
    assert "--sources=places365/resnet50,imagenet/resnet50\n" in flags_text and "--lr_milestones=1\n" in flags_text


@pytest.mark.slow
def test_cli_on_an_image_folder_with_a_keras_source(tmp_path, digits_folder, tiny_source_path):
    model_dir = tmp_path / "folder_run"
    result = run_script(
        [
            "tools/train.py",
            f"--dataset=folder:{digits_folder}",
            "--image_size=16",
            f"--sources={tiny_source_path}",
            "--epochs=1",
            "--batch_size=32",
            "--verbose=0",
            f"--model_dir={model_dir}",
            "--distribution_strategy=mirrored",
            f"--export_dir={tmp_path / 'serving'}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    assert results["num_classes"] == 10 and "val_aux_tiny_loss" in results
    assert results["export_path"] == str(tmp_path / "serving" / "1")
    assert os.path.exists(tmp_path / "serving" / "1" / "saved_model.pb")
    assert len(_history_rows(model_dir)) == 1


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--target=resnet19"], "Unknown --target=resnet19"),
        (["--num_classes=5"], "--num_classes=5 but folder:"),
        (["--epochs=abc"], "flag --epochs=abc"),
        (["--no_such_flag=1"], "Unknown command line flag 'no_such_flag'"),
        (["--method=sskt"], "--method=sskt needs at least one source (--sources=...): without one it would train"),
    ],
)
@pytest.mark.slow
def test_cli_errors_are_one_clear_line(flags, message, digits_folder, tmp_path):
    result = run_script(
        [
            "tools/train.py",
            f"--dataset=folder:{digits_folder}",
            "--image_size=16",
            "--method=scratch",
            "--sources=",
            "--epochs=1",
            f"--model_dir={tmp_path / 'bad'}",
            *flags,
        ]
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def _config(**overrides):
    """A one-epoch config: SSKT where ``overrides`` name sources, else scratch (SSKT needs a source)."""
    base = dict(
        sources=[], epochs=1, batch_size=32, verbose=0, method="sskt" if overrides.get("sources") else "scratch"
    )
    return dataclasses.replace(TrainConfig(**base), **overrides)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(dataset="cifar11"), "Unknown dataset 'cifar11'"),
        (dict(sources=["imagenet/resnet9"]), r"Unknown source 'imagenet/resnet9': use .*imagenet/<arch> \(resnet50"),
        (dict(sources=["/nonexistent/source.keras"]), "does not exist"),
        (dict(sources=["places365"]), "Unknown source 'places365'"),
        (dict(sources=["imagenet/resnet50"], source_weights="/nonexistent/w.h5"), "--source_weights file"),
        (dict(sources=["places365/resnet9"]), r"Unknown source 'places365/resnet9': use places365/<arch> \(resnet18"),
        (dict(sources=["places365/resnet50"], places365_weights="/nonexistent/p.keras"), "--places365_weights file"),
        (dict(sources=["places365/resnet34"]), "CSAIL publishes Places365 weights for resnet18 and resnet50 only"),
        (dict(aux_loss="mse"), "Unknown --aux_loss=mse"),
        (dict(head="mlp"), "Unknown --head=mlp"),
        (dict(source_scale="x"), "Invalid source scale"),
        (dict(temperature=0.0), "--temperature=0.0: must be > 0"),
        (dict(alpha=-1.0), "--alpha=-1.0: must be >= 0"),
        (dict(lr_milestones=[-3]), "--lr_milestones=-3: must be numbers >= 0"),
        (dict(lr=float("nan")), "--lr=nan: must be a finite number > 0"),
        (dict(lr_milestones=[60, 30]), "--lr_milestones=60,30: must be in increasing order"),
    ],
)
def test_bad_settings_fail_before_any_training(overrides, message, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # no converted Places365 weights cached
    with pytest.raises(ConfigError, match=message):
        training.train(_config(model_dir=str(tmp_path), **overrides))
    assert not (tmp_path / "history.csv").exists()


def test_batch_larger_than_the_training_set_is_rejected(tmp_path, digits_folder):
    with pytest.raises(ConfigError, match="--batch_size=512 is larger than the 300 training examples"):
        training.train(
            _config(dataset=f"folder:{digits_folder}", image_size=16, batch_size=512, model_dir=str(tmp_path))
        )


def test_train_lib_rejects_class_count_mismatch(tmp_path, digits_folder):
    with pytest.raises(ConfigError, match="--num_classes=3 but .* has 10 classes"):
        training.train(
            _config(dataset=f"folder:{digits_folder}", image_size=16, num_classes=3, model_dir=str(tmp_path))
        )


@pytest.mark.slow
def test_same_seed_same_run(tmp_path, digits_folder, tiny_source_path):
    def run(name, seed):
        return training.train(
            _config(
                dataset=f"folder:{digits_folder}",
                image_size=16,
                sources=[tiny_source_path],
                seed=seed,
                model_dir=str(tmp_path / name),
            )
        )

    first, second, other = run("a", 3), run("b", 3), run("c", 4)
    for key in ("loss", "aux_tiny_loss", "val_loss", "val_accuracy"):
        assert first[key] == second[key], key
    assert other["loss"] != first["loss"]


@pytest.mark.slow
def test_every_console_script_runs_its_tool():

    with open(f"{REPO}/pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert {"sskt-train", "sskt-export", "sskt-cache-soft-labels"} <= set(scripts)
    # What pip's generated script does: import the entry point and call it. An unknown flag shows
    # that the tool's own flag parser runs (one error line, exit 2).
    for name, entry_point in scripts.items():
        result = run_entry_point(entry_point, [name, "--no_such_flag=1"])
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert "no_such_flag" in result.stderr and "Run with --helpfull" in result.stderr, (name, result.stderr[-2000:])


TOOLS = [
    "tools/train.py",
    "tools/export.py",
    "tools/cache_soft_labels.py",
    "tools/convert_torch_resnet.py",
    "tools/inspect_soft_labels.py",
    "tools/rank_sources.py",
    "tools/plot_runs.py",
    "tools/reproduce.py",
    "tools/linear_probe.py",
    "tools/source_choice.py",
    "tools/digits_study.py",
]


@pytest.mark.parametrize("tool", TOOLS)
def test_help_lists_the_tools_own_flags_by_topic_and_exits_0(tool):
    result = run_script([tool, "--help"])
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert text.startswith(f"usage: {os.path.basename(tool)} [--flagfile=FILE]")
    assert "--flagfile=FILE reads flags from a file" in text
    assert "--logtostderr" not in text and "--tfds_debug_list_dir" not in text  # absl's, tfds': --helpfull
    assert ":mod:" not in text and "``" not in text  # no reStructuredText markup
    flags_shown = re.findall(r"^  --(?:\[no\])?(\w+) \(default: ", text, flags=re.M)
    assert flags_shown and len(flags_shown) == len(set(flags_shown))
    if tool in ("tools/train.py", "tools/cache_soft_labels.py", "tools/rank_sources.py"):
        # Every TrainConfig flag, under its topic, with its default.
        assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(flags_shown)
        topics = re.findall(r"^(\S[^:]*):$", text, flags=re.M)
        assert topics[-7:] == [
            "Data",
            "Method",
            "Target network",
            "Sources and auxiliary heads",
            "Optimisation and speed",
            "Output, resume and reliability",
            "Distribution",
        ]
        assert "  --lr (default: '0.1')\n      Initial SGD learning rate." in text
        assert "  --[no]augment (default: true)" in text


def test_every_console_script_prints_help_and_exits_0():
    with open(f"{REPO}/pyproject.toml", "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    for name, entry_point in scripts.items():
        result = run_entry_point(entry_point, [name, "--help"])
        assert result.returncode == 0, (name, result.stderr[-2000:])
        assert result.stdout.startswith(f"usage: {name} [--flagfile=FILE]"), name
