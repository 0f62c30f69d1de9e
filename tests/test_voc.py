"""Pascal VOC 2007: multi-label loading (mocked tfds), VOC average precision, the mAP callback."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from helpers.mock_tfds import mocked_tfds

from sskt_tf import data
from sskt_tf.errors import ConfigError
from sskt_tf.training.callbacks import MeanAveragePrecision
from sskt_tf.training.history import read_history
from sskt_tf.training.metrics import mean_average_precision, voc_average_precision

# One class, six images, given out of rank order. Ranked by score:
#   label  1    0    1    0    0    1
#   P      1   1/2  2/3  2/4  2/5  3/6
#   R     1/3  1/3  2/3  2/3  2/3   1
# Max precision at recall >= t: 1 for t = 0..0.3 (4 points), 2/3 for
# t = 0.4..0.6 (3 points), 1/2 for t = 0.7..1 (4 points):
# AP = (4 * 1 + 3 * 2/3 + 4 * 1/2) / 11 = 8/11.
SCORES = np.array([0.6, 0.9, 0.4, 0.7, 0.8, 0.5])
LABELS = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.0])


def test_average_precision_by_hand():
    assert voc_average_precision(SCORES, LABELS) == pytest.approx([8 / 11], abs=1e-12)


def test_difficult_examples_are_ignored():
    # The negative at score 0.8 (ranked second) made difficult. Ranked without it:
    #   P 1, 2/2, 2/3, 2/4, 3/5 at R 1/3, 2/3, 2/3, 2/3, 1, so
    #   AP = (7 * 1 + 4 * 3/5) / 11 = 9.4/11 (8/11 if it still counted as a negative).
    difficult = LABELS.copy()
    difficult[4] = -1.0
    assert voc_average_precision(SCORES, difficult) == pytest.approx([9.4 / 11], abs=1e-12)
    ignore = np.arange(6) == 4
    assert voc_average_precision(SCORES, LABELS, ignore=ignore) == pytest.approx([9.4 / 11], abs=1e-12)


def test_recall_thresholds_are_exact_tenths():
    # Ten positives ranked 3 positives, 1 negative, 7 positives: recall is exactly 0.3 at
    # precision 1, so t = 0..0.3 give 1 and t = 0.4..1 the final 10/11. A float step
    # (0.30000000000000004) would drop the 1 at t = 0.3.
    labels = np.array([1.0] * 3 + [0.0] + [1.0] * 7)
    scores = -np.arange(11.0)
    assert voc_average_precision(scores, labels) == pytest.approx([(4 + 7 * 10 / 11) / 11], abs=1e-12)


def test_perfect_ranking_and_map_skips_classes_without_positives():
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 0, -1], [0, 1, 0]], np.float32)
    perfect = labels * 10.0
    np.testing.assert_allclose(voc_average_precision(perfect, labels)[:2], [1.0, 1.0])
    scores = np.stack([SCORES, 1.0 - SCORES, SCORES], axis=1)
    six = np.stack([LABELS, 1.0 - LABELS, np.zeros(6)], axis=1)
    mean_ap, ap = mean_average_precision(scores, six)
    assert np.isnan(ap[2]) and mean_ap == pytest.approx((ap[0] + ap[1]) / 2)
    assert ap[0] == pytest.approx(8 / 11)
    assert np.isnan(mean_average_precision(scores, np.zeros((6, 3)))[0])


def _devkit_ap(scores, labels):
    """A literal, per-class reading of VOCevalcls.m (gt: 1, -1 negative, 0 difficult)."""
    gt = np.where(labels > 0, 1, np.where(labels == 0, -1, 0))[np.argsort(-scores, kind="stable")]
    tp, fp = np.cumsum(gt > 0), np.cumsum(gt < 0)
    recall = tp / (gt > 0).sum()
    precision = tp / np.maximum(tp + fp, 1)
    return sum(max(precision[recall >= t], default=0.0) for t in np.arange(11) / 10) / 11


def test_matches_a_literal_devkit_reading_on_random_rankings_with_ties():
    rng = np.random.RandomState(0)
    for trial in range(50):
        scores = rng.randint(0, 4, (20, 3)).astype(float) if trial % 2 else rng.randn(20, 3)
        labels = rng.choice([1.0, 0.0, -1.0], (20, 3), p=[0.3, 0.6, 0.1])
        labels[0] = 1.0  # every class has a positive
        expected = [_devkit_ap(scores[:, c], labels[:, c]) for c in range(3)]
        np.testing.assert_allclose(voc_average_precision(scores, labels), expected, atol=1e-12)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one shape"):
        voc_average_precision(np.zeros((4, 2)), np.zeros((4, 3)))


def _label_vector(labels, labels_no_difficult, mark_difficult):
    features = dict(
        labels=tf.constant(labels, tf.int64), labels_no_difficult=tf.constant(labels_no_difficult, tf.int64)
    )
    return data.voc_labels(features, 5, mark_difficult).numpy()


def test_voc_label_encoding():
    # Class 0: a non-difficult object (and a difficult one); 2: twice; 3: difficult objects only.
    labels, clear = [0, 0, 2, 2, 3], [0, 2, 2]
    np.testing.assert_array_equal(_label_vector(labels, clear, False), [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(_label_vector(labels, clear, True), [1, 0, 1, data.DIFFICULT, 0])
    np.testing.assert_array_equal(_label_vector([], [], True), [0, 0, 0, 0, 0])
    assert _label_vector(labels, clear, True).dtype == np.float32


def test_voc_loads_multi_hot_labels_with_mock_data():
    # mock_data draws each feature independently (lists of random class ids, `objects`'
    # fields of unequal lengths): the encoding reads only `labels` and `labels_no_difficult`.
    with tfds.testing.mock_data(num_examples=6):
        train, val, info = data.load_tfds("voc/2007")
        train_labels = np.stack([label.numpy() for _, label in train])
        val_labels = np.stack([label.numpy() for _, label in val])
        image, _ = next(iter(train))
        splits = data.load_splits("voc/2007", image_size=32)
        small, _ = next(iter(splits.val))
        loaded = data.load("voc/2007", batch_size=3, image_size=32, seed=0)
        x, y = next(iter(loaded.train))
        with pytest.raises(ConfigError, match="vary in size"):
            data.load_splits("voc/2007")
    assert info["multi_label"] is True and info["num_classes"] == 20 and info["class_names"][0] == "aeroplane"
    assert info["image_shape"] == (None, None, 3) and info["train_examples"] == 6
    assert train_labels.shape == (6, 20) and train_labels.dtype == np.float32
    assert set(np.unique(train_labels)) <= {0.0, 1.0} and set(np.unique(val_labels)) <= {-1.0, 0.0, 1.0}
    assert image.dtype == tf.uint8 and image.shape[-1] == 3
    assert small.shape == (32, 32, 3) and splits.info["multi_label"] is True
    assert loaded.multi_label and x.shape == (3, 32, 32, 3) and y.shape == (3, 20) and y.dtype == tf.float32


def test_single_label_datasets_are_not_multi_label(digits_folder):
    with tfds.testing.mock_data(num_examples=4):
        assert data.load_tfds("cifar10")[2]["multi_label"] is False
    assert data.load_splits(f"folder:{digits_folder}", image_size=8).info["multi_label"] is False


def test_map_callback_matches_metric(tmp_path):
    rng = np.random.RandomState(0)
    images = rng.uniform(0, 255, (40, 8, 8, 3)).astype(np.float32)
    labels = rng.choice([1.0, 0.0, -1.0], (40, 4), p=[0.4, 0.5, 0.1]).astype(np.float32)
    train = tf.data.Dataset.from_tensor_slices((images, np.maximum(labels, 0.0))).batch(8)
    val = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    model.compile("sgd", keras.losses.BinaryCrossentropy(from_logits=True))
    callbacks = [
        MeanAveragePrecision(val, output_path=str(tmp_path / "ap.json"), class_names=list("abcd")),
        keras.callbacks.CSVLogger(str(tmp_path / "history.csv")),
    ]
    history = model.fit(train, epochs=2, callbacks=callbacks, shuffle=False, verbose=0)
    expected, ap = mean_average_precision(model.predict(val, verbose=0), labels)
    assert history.history["val_mAP"][-1] == pytest.approx(expected, abs=1e-9) and 0 < expected <= 1
    assert float(read_history(str(tmp_path / "history.csv"))[-1]["val_mAP"]) == pytest.approx(expected, abs=1e-6)
    report = json.loads((tmp_path / "ap.json").read_text())
    assert report["epoch"] == 2 and report["ap"]["a"] == pytest.approx(ap[0], abs=1e-9)


@pytest.mark.slow
def test_sskt_trains_on_mock_voc_and_picks_best_on_map(tmp_path, tiny_source_path):
    # (The four-stage ImageNet-style targets train in tests/test_imagenet_resnet.py.)
    from sskt_tf import training
    from sskt_tf.training.config import TrainConfig

    config = TrainConfig(
        dataset="voc/2007",
        image_size=32,
        target="resnet20",
        sources=[tiny_source_path],
        target_loss="bce",
        epochs=1,
        steps_per_epoch=2,
        batch_size=8,
        lr_milestones=[],
        verbose=0,
        model_dir=str(tmp_path / "voc"),
    )
    with mocked_tfds(16):
        results = training.train(config)
        with pytest.raises(ConfigError, match="multi-label .*--target_loss=bce"):
            training.train(dataclasses.replace(config, target_loss="ce", model_dir=str(tmp_path / "ce")))
        with pytest.raises(ConfigError, match="--method=dml trains single-label classifiers"):
            training.train(dataclasses.replace(config, method="dml", model_dir=str(tmp_path / "dml")))
    assert results["num_classes"] == 20 and 0.0 <= results["val_mAP"] <= 1.0
    assert results["best_val_mAP"] == pytest.approx(results["val_mAP"]) and results["best_epoch"] == 1
    assert "val_accuracy" not in results and np.isfinite(results["val_loss"])
    report = json.loads((tmp_path / "voc" / "val_ap.json").read_text())
    assert len(report["ap"]) == 20 and "aeroplane" in report["ap"]
    best = keras.saving.load_model(tmp_path / "voc" / "best.keras", compile=False)
    assert best.name == "resnet20" and best.output_shape == (None, 20)
