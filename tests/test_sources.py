"""Sources: frozen, resized, preprocessed, loaded from files; clear errors."""

import keras
import numpy as np
import pytest

from sskt_tf import sources
from sskt_tf.errors import ConfigError
from sskt_tf.sources.fold_batch_norm import fold_batch_norm


def _recording_model(input_shape=(None, None, 3), classes=4):
    """A model whose logits expose its input: mean of each channel and a BN layer."""
    inputs = keras.Input(input_shape)
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    bn = keras.layers.BatchNormalization(name="bn")(pooled)
    return keras.Model(inputs, keras.layers.Dense(classes)(bn))


def test_source_is_frozen_and_returns_float32_logits():
    model = _recording_model()
    source = sources.Source(model, "rec", preprocess=None)
    assert source.trainable is False and model.trainable is False
    assert source.trainable_weights == []
    out = source(np.random.uniform(0, 255, (2, 8, 8, 3)).astype("float32"))
    assert out.shape == (2, 4) and "float32" in str(out.dtype)


def test_source_resizes_by_scale_and_fixed_size():
    seen = []
    inputs = keras.Input((None, None, 3))
    shape_probe = keras.layers.Lambda(lambda t: (seen.append(tuple(t.shape[1:3])), t)[1])(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(shape_probe)))
    sources.Source(model, "scaled", scale="7/3")(np.zeros((1, 32, 32, 3), "float32"))
    sources.Source(model, "fixed", input_size=40)(np.zeros((1, 32, 32, 3), "float32"))
    assert (74, 74) in seen and (40, 40) in seen
    assert sources.scaled_size(96, 7 / 3) == 224 and sources.scaled_size(32, 7 / 3) == 74


def test_fixed_input_model_sets_source_size():
    source = sources.Source(_recording_model((24, 24, 3)), "fixed24")
    assert source.output_size((32, 32)) == (24, 24)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocessing_modes_follow_their_formulas(mode):
    identity = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Identity()])
    inputs = keras.Input((2, 2, 3))
    model = keras.Model(inputs, keras.layers.Flatten()(identity(inputs)))
    image = np.random.uniform(0, 255, (1, 2, 2, 3)).astype("float32")
    got = np.asarray(sources.Source(model, mode, preprocess=mode)(image)).reshape(1, 2, 2, 3)
    if mode == "caffe":  # RGB -> BGR, minus the ImageNet BGR means
        expected = image[..., ::-1] - np.array([103.939, 116.779, 123.68])
    elif mode == "tf":  # to [-1, 1]
        expected = image / 127.5 - 1.0
    else:  # to [0, 1], minus ImageNet RGB mean, over std
        expected = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(got, expected, atol=1e-4)


# Each keras.applications architecture and the module whose preprocess_input its weights expect.
_APPLICATION_MODULES = {
    "resnet50": "resnet50",
    "resnet101": "resnet",
    "resnet152": "resnet",
    "resnet50v2": "resnet_v2",
    "resnet101v2": "resnet_v2",
    "resnet152v2": "resnet_v2",
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "mobilenetv2": "mobilenet_v2",
    "efficientnetb0": "efficientnet",
    "efficientnetb1": "efficientnet",
    "densenet121": "densenet",
}


def test_every_imagenet_architecture_is_listed_with_its_module():
    assert set(_APPLICATION_MODULES) == set(sources.IMAGENET_ARCHS)


@pytest.mark.parametrize("arch", sorted(_APPLICATION_MODULES))
def test_imagenet_sources_preprocess_like_their_keras_application(arch):
    module = getattr(keras.applications, _APPLICATION_MODULES[arch])
    image = np.random.RandomState(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    source = sources.Source(_recording_model(), arch, preprocess=sources.IMAGENET_ARCHS[arch][1])
    np.testing.assert_allclose(source.preprocess_images(image), module.preprocess_input(image.copy()), atol=1e-4)


def test_places365_source_uses_torchvision_preprocessing():
    source = sources.places365("resnet18", weights=None, input_size=8)
    assert source.name == "places365_resnet18" and source.num_classes == 365
    image = np.random.RandomState(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = (image / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(source.preprocess_images(image), expected, atol=1e-5)


@pytest.mark.parametrize("softmax_layer", ["activation", "Softmax"])
def test_softmax_output_is_turned_into_log_probabilities(softmax_layer):
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    if softmax_layer == "activation":
        outputs = keras.layers.Dense(3, activation="softmax")(x)
    else:
        outputs = keras.layers.Softmax()(keras.layers.Dense(3)(x))
    model = keras.Model(inputs, outputs)
    source = sources.Source(model, "probs")
    assert source.from_logits is False
    image = np.random.rand(2, 4, 4, 3).astype("float32")
    np.testing.assert_allclose(np.exp(source(image)), model(image), atol=1e-5)


def test_imagenet_builder_uses_keras_applications_at_any_size():
    source = sources.imagenet("mobilenetv2", weights=None, input_size=74)
    assert source.name == "imagenet_mobilenetv2" and source.num_classes == 1000
    assert source.preprocess == "tf" and source.input_size == (74, 74)
    assert source.model.input_shape == (None, 74, 74, 3)
    assert source(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 1000)


@pytest.mark.slow
def test_resized_imagenet_model_keeps_every_layer_and_weight(monkeypatch, tmp_path):
    # EfficientNet adds an input-rescaling layer only when it loads ImageNet weights: a
    # rebuild at another size must keep it. Serve "ImageNet" weights from a local file.
    reference = keras.applications.EfficientNetB0(weights=None, classifier_activation=None)
    weights_file = str(tmp_path / "efficientnetb0.weights.h5")
    reference.save_weights(weights_file)
    monkeypatch.setattr("keras.src.applications.efficientnet.file_utils.get_file", lambda *a, **k: weights_file)
    # The source folds its BatchNorm layers: compare with the folded full-size network.
    full = fold_batch_norm(keras.applications.EfficientNetB0(weights="imagenet", classifier_activation=None))
    source = sources.imagenet("efficientnetb0", input_size=74)
    assert [type(layer).__name__ for layer in source.model.layers[1:]] == [
        type(layer).__name__ for layer in full.layers[1:]
    ]
    assert sum(isinstance(layer, keras.layers.Rescaling) for layer in source.model.layers) == 2
    for a, b in zip(source.model.weights, full.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert source.model.input_shape == (None, 74, 74, 3)


def test_imagenet_download_failure_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.mobilenet_v2.file_utils.get_file", offline)
    with pytest.raises(ConfigError, match=r"(?s)Could not load ImageNet weights.*weights=PATH"):
        sources.imagenet("mobilenetv2", input_size=74)


def test_imagenet_errors():
    with pytest.raises(ConfigError, match="Unknown ImageNet architecture 'resnet9'"):
        sources.imagenet("resnet9", weights=None)
    with pytest.raises(ConfigError, match="does not exist"):
        sources.imagenet("resnet50", weights="/nonexistent/resnet50.h5")
    with pytest.raises(ConfigError, match="only takes 224x224"):
        sources.imagenet("vgg16", weights=None, input_size=74)


def test_from_file_loads_a_saved_model(tiny_source_path):
    source = sources.from_file(tiny_source_path)
    assert source.name == "tiny" and source.num_classes == 5
    assert source.input_size == (16, 16)  # the saved model's fixed input size
    assert source(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 5)


def test_from_file_and_spec_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        sources.from_file(str(tmp_path / "missing.keras"))
    (tmp_path / "model.h5").write_text("x")
    with pytest.raises(ConfigError, match="must be a Keras v3 '.keras' file"):
        sources.from_file(str(tmp_path / "model.h5"))
    (tmp_path / "broken.keras").write_text("not a zip")
    with pytest.raises(ConfigError, match="broken.keras. is not a .keras archive .a .keras file is a zip"):
        sources.from_file(str(tmp_path / "broken.keras"))
    (tmp_path / "empty.keras").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"empty.keras' is empty \(0 bytes\)"):
        sources.from_file(str(tmp_path / "empty.keras"))
    with pytest.raises(ConfigError, match="Unknown source 'places'"):
        sources.from_spec("places", 32)
    with pytest.raises(
        ConfigError, match=r"Unknown source 'places365/resnet9': use places365/<arch> \(resnet18, .*resnet50"
    ):
        sources.check_spec("places365/resnet9")
    with pytest.raises(ConfigError, match="Source model file 'places365/mine.keras' does not exist"):
        sources.check_spec("places365/mine.keras")
    with pytest.raises(ConfigError, match="Invalid source scale"):
        sources.parse_scale("seven")


def test_source_saves_and_reloads_inside_a_model(tiny_source_path, tmp_path):
    source = sources.from_file(tiny_source_path)
    inputs = keras.Input((32, 32, 3))
    wrapper = keras.Model(inputs, source(inputs))
    wrapper.save(tmp_path / "wrapped.keras")
    restored = keras.saving.load_model(tmp_path / "wrapped.keras")
    image = np.random.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert restored.layers[-1].input_size == (16, 16)
    np.testing.assert_allclose(restored(image), wrapper(image), atol=1e-5)
