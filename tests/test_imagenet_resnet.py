"""torchvision-layout ResNet targets: torchvision's size and layout, registry, SSKT, saving.

Models are built at 64x64 (parameter counts do not depend on the input size)
to keep the file fast.
"""

import functools

import keras
import numpy as np
import pytest

from sskt_tf import SSKTModel, sources, targets
from sskt_tf.targets import torchvision_resnet

SIZE = 64
STAGE_WIDTHS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048)}


@functools.cache
def imagenet_1000(depth):
    """One read-only 1000-class model per depth, shared by the size and shape tests."""
    return torchvision_resnet.target(depth, 1000, input_shape=(SIZE, SIZE, 3))


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth,params", [(18, 11_689_512), (34, 21_797_672), (50, 25_557_032)])
def test_parameter_counts_equal_torchvision(depth, params):
    # torchvision.models.resnet<depth>(): BN gamma/beta train, moving statistics do not.
    model = imagenet_1000(depth)
    assert model.name == f"resnet{depth}"
    assert trainable_count(model) == params


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_stage_outputs_have_strides_4_to_32(depth):
    model = imagenet_1000(depth)
    shapes = [tuple(model.get_layer(f"layer{i}").output.shape[1:]) for i in (1, 2, 3, 4)]
    expected = [(SIZE // stride, SIZE // stride, width) for stride, width in zip((4, 8, 16, 32), STAGE_WIDTHS[depth])]
    assert shapes == expected
    assert model.get_layer("avgpool").output.shape[-1] == STAGE_WIDTHS[depth][-1]
    assert model.get_layer("fc").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("depth", [18, 50])
def test_target_computes_what_the_converted_network_behind_torch_preprocessing_does(depth):
    # A converted checkpoint reproduces torchvision's logits (tests/test_torch_convert.py). The
    # target variant (its own input normalisation, synchronized BatchNorm) must compute the same
    # function from raw pixels with the same weights.
    keras.utils.set_random_seed(0)
    reference = torchvision_resnet.build(f"resnet{depth}", 10, (SIZE, SIZE, 3))
    ours = torchvision_resnet.target(depth, 10, input_shape=(SIZE, SIZE, 3))
    # The same torch-named layers; the target's "normalize" holds constants, not weights.
    assert [layer.name for layer in ours.layers if layer.weights] == [
        layer.name for layer in reference.layers if layer.weights
    ]
    rng = np.random.RandomState(0)
    for layer in reference.layers:
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            # gamma, beta, moving mean, moving variance away from their initial 1, 0, 0, 1
            weights = [
                rng.uniform(low, high, w.shape).astype("float32")
                for w, (low, high) in zip(weights, [(0.5, 1.5), (-0.2, 0.2), (-0.2, 0.2), (0.5, 1.5)])
            ]
            layer.set_weights(weights)
        if weights:
            ours.get_layer(layer.name).set_weights(weights)
    images = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    expected = torchvision_resnet.with_raw_pixel_input(reference)(images)
    np.testing.assert_allclose(ours(images), expected, rtol=1e-4, atol=1e-4)


def test_registry_builds_torchvision_resnets_and_keeps_cifar_ones():
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet20"} <= set(targets.TARGETS)
    model = targets.get("resnet18", 20, image_size=SIZE)
    assert model.name == "resnet18" and model.output_shape == (None, 20)
    assert model.get_layer("layer4").output.shape[1:] == (2, 2, 512)
    cifar = targets.get("resnet20", 10)
    assert cifar.name == "resnet20" and len(cifar.get_layer("stage3").output.shape) == 4
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        torchvision_resnet.target(26, 10)


@pytest.fixture(scope="module")
def trained(tiny_source_path):
    """An SSKTModel (resnet18 target, transfer heads) after one train_on_batch, its batch and loss."""
    keras.utils.set_random_seed(0)
    target = targets.get("resnet18", 20, image_size=SIZE)
    model = SSKTModel(target, [sources.from_file(tiny_source_path)], head="transfer")
    # Eagerly: tracing the step costs about 8 s on 2 cores; tests/test_model.py covers graph mode.
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), weight_decay=5e-4, run_eagerly=True)
    images = np.random.RandomState(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    loss = model.train_on_batch(images, np.array([3, 17]))
    return model, images, loss


def test_transfer_module_taps_four_stages_and_trains(trained):
    model, _, loss = trained
    assert model.feature_layers == ["layer1", "layer2", "layer3", "layer4"]
    assert len(model.heads[0].branches) == 4 and model.heads[0].width == 512
    assert np.isfinite(float(np.asarray(loss).ravel()[0]))


def test_saves_and_reloads_as_keras(trained, tmp_path):
    model, images, _ = trained
    model.save(tmp_path / "sskt_resnet18.keras")
    restored = keras.saving.load_model(tmp_path / "sskt_resnet18.keras")
    assert restored.target.name == "resnet18"
    for before, after in zip(model._forward(images, training=False), restored._forward(images, training=False)):
        np.testing.assert_allclose(before, after, rtol=1e-6, atol=1e-6)
