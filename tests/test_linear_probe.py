"""The linear probe: a logistic regression on a frozen source's pooled features."""

import numpy as np
import pytest
from studies.linear_probe import C_GRID, linear_probe, pooled_features

from sskt_tf import sources
from sskt_tf.errors import ConfigError
from sskt_tf.training.flags import config_from_args


def test_pooled_features_are_the_input_of_the_sources_classifier(tiny_source_path, digits):
    import keras
    import tensorflow as tf

    source = sources.from_file(tiny_source_path)
    images, labels = digits[0][:10], digits[1][:10]
    features, read_labels = pooled_features(source, tf.data.Dataset.from_tensor_slices((images, labels)))
    dense = source.model.layers[-1]
    logits = np.asarray(dense(keras.ops.convert_to_tensor(features.astype("float32"))))
    np.testing.assert_allclose(logits, np.asarray(source(images.astype("float32"))), atol=1e-4)
    assert features.shape == (10, 8) and read_labels.tolist() == labels.tolist()


def test_the_probe_reads_digits_from_a_tiny_source_better_than_chance(tiny_source_path, digits_folder):
    config = config_from_args([f"--dataset=folder:{digits_folder}", "--image_size=16", f"--sources={tiny_source_path}"])
    result = linear_probe(config)
    assert (result["train_examples"], result["val_examples"], result["feature_dim"]) == (300, 100, 8)
    assert result["C"] in C_GRID and set(result["cv_accuracy"]) == set(C_GRID)
    assert 0.2 < result["val_accuracy"] <= 1.0  # ten classes: chance is 0.1
    with pytest.raises(ConfigError, match="reads one source's features"):
        linear_probe(config_from_args([f"--dataset=folder:{digits_folder}", "--sources="]))
