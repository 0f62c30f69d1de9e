"""The source-family registry: specs resolve to families, which check and build their sources."""

import dataclasses
import os

import keras
import pytest
from helpers import plugins
from helpers.in_process import run_script

from sskt_tf import TrainConfig, sources
from sskt_tf.errors import ConfigError
from sskt_tf.sources import registry
from sskt_tf.sources.flags import build_sources, check_source_flags


def _spec_of_every_family(tiny_source_path):
    """One buildable spec and its weights per registered family (random weights where they download)."""
    return {
        "keras_applications": ("imagenet/MobileNetV2", None),
        "places365": ("places365/resnet18", None),
        "efficientnet_lite": ("imagenet/efficientnet_lite0", "published"),
        "keras_file": (tiny_source_path, "published"),
    }


def test_every_family_round_trips_spec_check_build(tiny_source_path):
    specs = _spec_of_every_family(tiny_source_path)
    assert sorted(family.name for family in sources.families()) == sorted(specs)
    for name, (spec, weights) in specs.items():
        family, _ = sources.parse_spec(spec)
        assert family.name == name
        assert sources.check_spec(spec, weights=weights) is family
        source = sources.from_spec(spec, 16, source_image_size=32, weights=weights)
        assert isinstance(source, sources.Source) and source.trainable_weights == []
        assert family.num_classes in (None, source.num_classes)
        assert tuple(source(keras.ops.zeros((1, 16, 16, 3))).shape) == (1, source.num_classes)


def test_the_architecture_picks_the_family_under_a_shared_prefix():
    assert sources.parse_spec("imagenet/resnet50")[0].name == "keras_applications"
    assert sources.parse_spec("imagenet/EfficientNet_Lite2") == (
        registry.resolve("imagenet/efficientnet_lite2")[0],
        "efficientnet_lite2",
    )
    assert sources.parse_spec("places365/resnet50.keras")[0].name == "keras_file"


@pytest.mark.parametrize(
    "spec, listed",
    [
        (
            "imagenet/resnet9",
            ["imagenet/<arch> (resnet50", "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2"],
        ),
        ("places365/vgg16", ["places365/<arch> (resnet18, resnet34, resnet50, resnet101, resnet152)"]),
        ("coco/resnet50", ["imagenet/<arch>", "places365/<arch>", "a path to a .keras model"]),
        ("imagenet/", ["imagenet/<arch> (resnet50"]),
        ("", ["imagenet/<arch>", "places365/<arch>", "a path to a .keras model"]),
    ],
)
def test_an_unknown_or_malformed_spec_lists_what_each_family_offers(spec, listed):
    with pytest.raises(ConfigError) as error:
        sources.check_spec(spec)
    message = str(error.value)
    assert message.startswith(f"Unknown source {spec!r}: use ") and "\n" not in message
    for offer in listed:
        assert offer in message


def test_a_missing_weights_file_names_the_familys_flag(tmp_path):
    with pytest.raises(ConfigError, match="--places365_weights file '.*nope.pth' does not exist"):
        sources.check_spec("places365/resnet18", weights=str(tmp_path / "nope.pth"))
    with pytest.raises(ConfigError, match="--source_weights file '.*nope.npz' does not exist"):
        sources.check_spec("imagenet/efficientnet_lite0", weights=str(tmp_path / "nope.npz"))


def test_registering_twice_or_offering_an_arch_twice_is_refused():
    family = registry.resolve("imagenet/resnet50")[0]
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(family)
    with pytest.raises(ValueError, match="imagenet/resnet50 is offered by keras_applications already"):
        registry.register(dataclasses.replace(family, name="another", archs=("resnet50",)))


@pytest.fixture
def toy_family(tiny_source_path):
    """A family registered by the test alone: ``toy/tiny`` is the tiny .keras source."""
    with plugins.toy_source_family(tiny_source_path) as registered:
        yield registered


def test_a_family_registered_elsewhere_is_picked_up_by_the_sources_flag(toy_family):
    _, built = toy_family
    config = TrainConfig(sources=["toy/tiny"], source_weights="toyweights", source_image_size=0)
    check_source_flags(config)
    (source,) = build_sources(config, 16)
    assert source.name == "toy_tiny" and built == [("tiny", "toyweights", 37)]  # floor(16 * 7/3)
    with pytest.raises(ConfigError, match="Unknown source 'toy/huge': use toy/<arch> \\(tiny\\): a test's own"):
        check_source_flags(dataclasses.replace(config, sources=["toy/huge"]))
    with pytest.raises(ConfigError, match="--source_weights file 'mine.h5' does not exist"):
        check_source_flags(dataclasses.replace(config, source_weights="mine.h5"))


def test_a_keras_source_that_returns_a_feature_map_is_refused_before_the_run_writes(tmp_path, digits_folder):
    inputs = keras.Input((16, 16, 3))
    feature_map = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    path = tmp_path / "features.keras"
    keras.Model(inputs, feature_map).save(path)
    model_dir = tmp_path / "run"
    result = run_script(
        ["tools/train.py", f"--sources={path}", f"--dataset=folder:{digits_folder}", f"--model_dir={model_dir}"]
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: Source model file '{path}' returns outputs of shape (None, 16, 16, 4); a source must return one "
        "[batch, classes] tensor of logits or probabilities (end it with pooling and a Dense layer)."
    ], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not os.path.exists(model_dir)


def test_random_weights_are_drawn_from_the_seed_so_a_rebuilt_cache_gets_the_same_network():
    config = TrainConfig(sources=["imagenet/efficientnet_lite0"], source_weights="none", source_image_size=32)

    def weights(config):
        (source,) = build_sources(config, 32)
        return source.model.get_weights()

    first = weights(config)
    keras.random.uniform((3,))  # other work moves Keras' global generator on between two builds
    again, other_seed = weights(config), weights(dataclasses.replace(config, seed=1))
    assert all((a == b).all() for a, b in zip(first, again))
    assert not all((a == b).all() for a, b in zip(first, other_seed))
