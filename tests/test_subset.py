"""Class subsets and low-label subsets (--classes, --train_examples_per_class, --subset_seed)."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers.processes import run_python

from sskt_tf import TrainConfig, data, training
from sskt_tf.data import subset
from sskt_tf.errors import ConfigError

NAMES = [f"c{i}" for i in range(6)]
# 20 examples of each of 6 classes, interleaved (labels 0..5, 0..5, ...).
LABELS = np.tile(np.arange(6), 20)


def _plan(**kwargs):
    return subset.plan(subset.Subset(**kwargs), LABELS, NAMES)


def test_the_draw_is_class_balanced_and_depends_only_on_the_subset_seed():
    kept = _plan(classes=("c4", "1", "c2"), examples_per_class=7, seed=0)
    assert kept.class_indices == (4, 1, 2) and kept.class_names == ("c4", "c1", "c2")
    labels = LABELS[kept.train_positions]
    assert sorted(np.bincount(labels, minlength=6).tolist()) == [0, 0, 0, 7, 7, 7]
    assert list(kept.train_positions) == sorted(kept.train_positions)
    np.testing.assert_array_equal(kept.label_map(6), [-1, 1, 2, -1, 0, -1])
    # A class's draw ignores the other kept classes and their order; N=4 is a prefix of N=7.
    alone = _plan(classes=("c1",), examples_per_class=7, seed=0)
    np.testing.assert_array_equal(alone.train_positions, kept.train_positions[labels == 1])
    smaller = _plan(classes=("c1",), examples_per_class=4, seed=0)
    assert set(smaller.train_positions) <= set(alone.train_positions)
    other_seed = _plan(classes=("c4", "1", "c2"), examples_per_class=7, seed=1)
    assert set(other_seed.train_positions) != set(kept.train_positions)
    # Only classes: every example of them, in the data's order.
    assert list(_plan(classes=("5", "0")).train_positions) == [i for i in range(120) if LABELS[i] in (0, 5)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(classes=("c9",)), "unknown class 'c9'; the dataset's classes are 0=c0"),
        (dict(classes=("7",)), "unknown class '7'"),
        (dict(classes=("c1", "1")), "names a class twice"),
        (dict(classes=("c1", "c1")), r"names \['c1'\] more than once"),
        (dict(examples_per_class=21), r"--train_examples_per_class=21 is more than these classes hold: c0 \(20\)"),
        (dict(examples_per_class=0), "keep at least 1 example a class"),
        (dict(examples_per_class=2, seed=-1), "--subset_seed must be >= 0"),
    ],
)
def test_bad_subsets_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _plan(**kwargs)


@pytest.mark.slow
def test_folder_subset_relabels_keeps_every_validation_image_and_is_the_same_in_another_process(digits_folder):
    wanted = subset.Subset(classes=("digit7", "digit2"), examples_per_class=5, seed=3)
    splits = data.load_splits(f"folder:{digits_folder}", image_size=16, subset=wanted)
    assert splits.info["class_names"] == ["digit7", "digit2"] and splits.info["num_classes"] == 2
    train_labels = [int(label) for _, label in splits.train]
    assert sorted(train_labels) == [0] * 5 + [1] * 5
    files = splits.info["subset"]["train_files"]
    assert len(files) == 10 and all(f.startswith(("train/digit7/", "train/digit2/")) for f in files)
    val_dir = digits_folder / "val"
    expected_val = len(list((val_dir / "digit7").glob("*.png"))) + len(list((val_dir / "digit2").glob("*.png")))
    val_labels = [int(label) for _, label in splits.val]
    assert len(val_labels) == expected_val and set(val_labels) == {0, 1}
    script = (
        f"from sskt_tf import data\nfrom sskt_tf.data import subset\n"
        f"s = data.load_splits('folder:{digits_folder}', image_size=16, subset=subset.{wanted!r})\n"
        "print(s.info['subset']['train_files'])"
    )
    other_process = run_python(["-c", script], timeout=120)
    assert other_process.returncode == 0, other_process.stderr[-2000:]
    assert other_process.stdout.strip().splitlines()[-1] == repr(files)


def test_tfds_subset_with_mock_data():
    with tfds.testing.mock_data(num_examples=60):
        full = data.load_splits("cifar10")
        labels = np.array([int(label) for _, label in full.train])
        # The mock's class names are "0".."9" (no metadata offline): 5 is dog, 3 cat.
        kept = data.load_splits("cifar10", subset=subset.Subset(classes=("5", "3"), examples_per_class=2))
        examples = [(image.numpy(), int(label)) for image, label in kept.train]
        val_labels = np.array([int(label) for _, label in full.val])
        kept_val = [int(label) for _, label in kept.val]
    assert kept.info["class_names"] == ["5", "3"] and kept.info["train_examples"] == 4 == len(examples)
    positions = kept.info["subset"]["train_positions"]
    full_images = [image.numpy() for image, _ in full.train]
    for (image, label), position in zip(examples, positions):
        np.testing.assert_array_equal(image, full_images[position])
        assert label == {5: 0, 3: 1}[labels[position]]
    assert sorted(kept_val) == sorted([0] * int(np.sum(val_labels == 5)) + [1] * int(np.sum(val_labels == 3)))


def _config(digits_folder, tmp_path, name, **overrides):
    base = dict(
        dataset=f"folder:{digits_folder}",
        image_size=16,
        sources=[],
        method="scratch",
        epochs=1,
        batch_size=10,
        verbose=0,
        classes=["digit3", "digit8", "digit1"],
        train_examples_per_class=6,
        model_dir=str(tmp_path / name),
    )
    return dataclasses.replace(TrainConfig(**base), **overrides)


@pytest.fixture(scope="module")
def subset_run(digits_folder, tmp_path_factory):
    """A finished 1-epoch run on 3 classes, 6 images each, exported: ``(directory, results)``."""
    root = tmp_path_factory.mktemp("subset_run")
    results = training.train(_config(digits_folder, root, "run", seed=1, export_dir=str(root / "export")))
    return root, results


@pytest.mark.slow
def test_runs_record_the_subset_and_every_seed_and_method_trains_on_the_same_images(
    digits_folder, tmp_path, subset_run
):
    root, first = subset_run
    second = training.train(_config(digits_folder, tmp_path, "b", seed=2, method="dml", alpha=1.0, temperature=1.0))
    assert first["class_names"] == ["digit3", "digit8", "digit1"] and first["num_classes"] == 3
    assert first["train_examples"] == 18 and second["method"] == "dml"
    chosen = [json.loads((run / "subset.json").read_text()) for run in (root / "run", tmp_path / "b")]
    assert chosen[0]["train_files"] == chosen[1]["train_files"]
    assert chosen[0]["classes"] == first["class_names"] and chosen[0]["train_examples_per_class"] == 6
    other_seed = training.load_splits(_config(digits_folder, tmp_path, "c", subset_seed=5))
    assert other_seed.info["subset"]["train_files"] != chosen[0]["train_files"]


def test_bad_subset_flags_fail_before_anything_is_loaded(tmp_path):
    config = TrainConfig(dataset="folder:/nonexistent", sources=[], method="scratch", model_dir=str(tmp_path / "x"))
    for overrides, message in (
        (dict(train_examples_per_class=0), "--train_examples_per_class=0: must be >= 1"),
        (dict(classes=["a", "a"]), "more than once"),
        (dict(subset_seed=-2), "--subset_seed"),
    ):
        with pytest.raises(ConfigError, match=message):  # not "does not exist": checked before the data
            training.train(dataclasses.replace(config, **overrides))


@pytest.mark.slow
def test_a_cache_built_for_another_subset_is_refused(digits_folder, tiny_source_path, tmp_path):
    config = _config(
        digits_folder,
        tmp_path,
        "run",
        method="sskt",
        sources=[tiny_source_path],
        seed=0,
        soft_label_cache=str(tmp_path / "cache"),
    )
    training.build_soft_label_cache(config, views=1)
    for overrides, flag in (
        (dict(subset_seed=1), "--subset_seed"),
        (dict(train_examples_per_class=5), "--train_examples"),
        (dict(classes=["digit3", "digit8"]), "--classes"),
    ):
        with pytest.raises(ConfigError, match=f"was made for another run: .*{flag}"):
            training.train(dataclasses.replace(config, **overrides))
    assert training.train(config)["soft_label_cache_views"] == 1


@pytest.mark.slow
def test_the_export_names_the_kept_classes(subset_run):
    import tensorflow as tf

    root, _ = subset_run
    serving = tf.saved_model.load(str(root / "export" / "1")).signatures["serving_default"]
    outputs = serving(images=tf.zeros([2, 16, 16, 3], tf.uint8))
    names = [name.decode() for name in outputs["class_names"].numpy()]
    assert all(name in ("digit3", "digit8", "digit1") for name in names)
    assert names == [["digit3", "digit8", "digit1"][int(c)] for c in outputs["classes"].numpy()]
