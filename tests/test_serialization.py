"""Every layer, loss and model sskt_tf registers with Keras survives a serialisation round trip.

A new registered class fails ``test_every_registered_object_has_an_example`` until it gets
an example here, so none can ship without the round trip being checked.
"""

import keras
import numpy as np
import pytest

import sskt_tf  # noqa: F401  (registers everything)
from sskt_tf import SSKTModel, sources, targets
from sskt_tf.methods import heads, losses
from sskt_tf.soft_labels import CachedSource
from sskt_tf.sources.fold_batch_norm import FoldedBatchNorm
from sskt_tf.targets.layers import ZeroPadShortcut

RNG = np.random.RandomState(0)
FEATURES = [RNG.normal(size=(2, 8, 8, 4)).astype("float32"), RNG.normal(size=(2, 4, 4, 6)).astype("float32")]
LOGITS = RNG.normal(size=(4, 5)).astype("float32")
OTHER_LOGITS = RNG.normal(size=(4, 5)).astype("float32")
MULTI_HOT = (RNG.uniform(size=(4, 5)) > 0.5).astype("float32")
IMAGES = RNG.uniform(0, 255, size=(2, 16, 16, 3)).astype("float32")
CLIP_FEATURES = [RNG.normal(size=(2, 4, 8, 8, 4)).astype("float32"), RNG.normal(size=(2, 1, 2, 2, 6)).astype("float32")]


def _tiny_source_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(keras.layers.Rescaling(1 / 255.0)(inputs))
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))


def _sskt_model():
    keras.utils.set_random_seed(0)
    target = targets.get("resnet20", 10, image_size=16)
    return SSKTModel(target, [sources.Source(_tiny_source_model(), "tiny")], head="transfer")


# Registered name -> (a factory of an instance, the call that must give the same result after the round trip).
EXAMPLES = {
    "LinearHead": (lambda: heads.LinearHead(5), lambda layer: layer(FEATURES[-1:])),
    "TransferModule": (lambda: heads.TransferModule(5, width=6), lambda layer: layer(FEATURES, training=False)),
    "TransferModule3D": (
        lambda: heads.TransferModule3D(5, width=6, bottleneck_width=3),
        lambda layer: layer(CLIP_FEATURES, training=False),
    ),
    "KDLoss": (lambda: losses.KDLoss(temperature=4.0), lambda loss: loss(LOGITS, OTHER_LOGITS)),
    "SoftCrossEntropy": (lambda: losses.SoftCrossEntropy(temperature=2.0), lambda loss: loss(LOGITS, OTHER_LOGITS)),
    "SoftBinaryCrossEntropy": (lambda: losses.SoftBinaryCrossEntropy(), lambda loss: loss(LOGITS, OTHER_LOGITS)),
    "SoftFocalLoss": (lambda: losses.SoftFocalLoss(gamma=1.5), lambda loss: loss(LOGITS, OTHER_LOGITS)),
    "CategoricalFocalLoss": (
        lambda: losses.CategoricalFocalLoss(gamma=1.0),
        lambda loss: loss(np.eye(5, dtype="float32")[[0, 1, 2, 3]], LOGITS),
    ),
    "SparseFocalLoss": (lambda: losses.SparseFocalLoss(gamma=3.0), lambda loss: loss(np.array([0, 1, 2, 4]), LOGITS)),
    "MultiLabelBCE": (lambda: losses.MultiLabelBCE(), lambda loss: loss(MULTI_HOT, LOGITS)),
    "CachedSource": (lambda: CachedSource(7, name="cached"), lambda layer: layer.compute_output_shape((2, 16, 16, 3))),
    "FoldedBatchNorm": (lambda: FoldedBatchNorm(), lambda layer: layer(FEATURES[0])),
    "ZeroPadShortcut": (lambda: ZeroPadShortcut(4, zeros_after=True), lambda layer: layer(CLIP_FEATURES[0])),
    "Source": (lambda: sources.Source(_tiny_source_model(), "tiny", preprocess="tf"), lambda layer: layer(IMAGES)),
    "SSKTModel": (_sskt_model, lambda model: model(IMAGES, training=False)),
}


def test_every_registered_object_has_an_example():
    registered = {name.split(">", 1)[1] for name in keras.saving.get_custom_objects() if name.startswith("sskt_tf>")}
    assert registered == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip_keeps_the_config_and_the_result(name):
    make, use = EXAMPLES[name]
    original = make()
    expected = use(original)  # builds layers, so their weights exist to copy
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    assert type(restored) is type(original)
    if isinstance(original, keras.layers.Layer):
        use(restored)
        restored.set_weights(original.get_weights())
    assert restored.get_config() == original.get_config()
    np.testing.assert_allclose(np.asarray(use(restored)), np.asarray(expected), rtol=1e-6, atol=1e-6)
