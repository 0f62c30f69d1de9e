"""Soft-label statistics (tools/inspect_soft_labels.py) on hand-made cases and end to end."""

import json

import numpy as np
import pytest
from helpers.in_process import run_script

from sskt_tf.soft_labels.stats import soft_label_statistics


def test_a_source_whose_top1_determines_the_label_has_full_mutual_information():
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(4)[[3, 3, 0, 0, 1, 1]] * 5.0  # label 0 -> source 3, 1 -> 0, 2 -> 1
    stats = soft_label_statistics(
        logits, labels, temperature=1.0, source_class_names=list("abcd"), target_class_names=["x", "y", "z"]
    )
    assert stats["mutual_information"] == pytest.approx(np.log(3)) == pytest.approx(stats["label_entropy"])
    assert stats["mapping_accuracy"] == 1.0 and stats["majority_accuracy"] == pytest.approx(1 / 3)
    assert stats["per_class"]["x"]["top_source_class"] == "d" and stats["per_class"]["x"]["top_source_share"] == 1.0
    p = np.exp(5.0) / (np.exp(5.0) + 3)
    assert stats["per_class"]["y"]["mean_soft_label"]["a"] == pytest.approx(p)
    assert stats["mean_max_probability"] == pytest.approx(p)


def test_a_constant_source_carries_nothing_and_temperature_softens():
    labels = np.array([0, 1, 0, 1])
    logits = np.tile([[2.0, 0.0, -1.0]], (4, 1))
    cold, hot = (soft_label_statistics(logits, labels, temperature=t) for t in (1.0, 100.0))
    assert cold["mutual_information"] == pytest.approx(0.0, abs=1e-12) and cold["mapping_accuracy"] == 0.5
    assert cold["mean_entropy"] < hot["mean_entropy"] < hot["max_entropy"] == pytest.approx(np.log(3))
    assert hot["max_entropy"] - hot["mean_entropy"] < 1e-3


@pytest.mark.slow
def test_inspect_tool_on_a_folder_with_a_keras_source(digits_folder, tiny_source_path, tmp_path):
    result = run_script(
        [
            "tools/inspect_soft_labels.py",
            f"--dataset=folder:{digits_folder}",
            "--image_size=16",
            f"--sources={tiny_source_path}",
            "--classes=digit1,digit7",
            "--temperature=3",
            f"--output={tmp_path / 'stats.json'}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())["tiny"]
    assert set(stats["per_class"]) == {"digit1", "digit7"} and stats["source_classes"] == 5
    assert "soft labels at T=3: mean entropy" in result.stdout
    missing = run_script(["tools/inspect_soft_labels.py", "--dataset=folder:/nonexistent", "--sources="])
    assert missing.returncode == 2 and "no sources to run" in missing.stderr  # before looking for the data
