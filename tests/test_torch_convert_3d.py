"""Hara-layout 3D ResNet checkpoints -> Keras: equal logits, architecture and shortcut inferred, clear errors."""

import numpy as np
import pytest
import torch
from torch_resnet3d import random_resnet3d, save_like_hara

from sskt_tf.errors import ConfigError
from sskt_tf.sources import torch_checkpoint
from sskt_tf.targets.resnet3d import VIDEO_MEAN

pytestmark = pytest.mark.torch


def _clips(count, frames, size, seed=0):
    """Raw pixel clips [batch, T, H, W, 3] in [0, 255]."""
    return np.random.RandomState(seed).uniform(0, 255, (count, frames, size, size, 3)).astype(np.float32)


def _torch_logits(model, clips):
    # Hara's network takes mean-subtracted clips [batch, 3, T, H, W]; the Keras one subtracts the mean itself.
    centred = clips - np.asarray(VIDEO_MEAN, np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(centred.transpose(0, 4, 1, 2, 3)))).numpy()


@pytest.fixture(scope="module")
def hara_resnet18(tmp_path_factory):
    """A random 3D ResNet-18 (shortcut A, 400 classes) saved as resnet-18-kinetics.pth was."""
    reference = random_resnet3d(18, 400, shortcut="A", seed=0)
    path = tmp_path_factory.mktemp("hara") / "resnet-18-kinetics.pth"
    save_like_hara(reference, path)
    return reference, str(path)


def test_converted_kinetics_resnet18_gives_the_torch_logits(hara_resnet18):
    reference, path = hara_resnet18
    model = torch_checkpoint.convert(path)  # architecture, shortcut and classes inferred
    assert model.name == "resnet3d18" and model.output_shape == (None, 400)
    assert not any(".downsample" in layer.name and layer.weights for layer in model.layers)  # shortcut A
    clips = _clips(2, 16, 112)
    expected = _torch_logits(reference, clips)
    assert np.abs(expected).max() > 1.0  # logits large enough for the tolerance to mean something
    np.testing.assert_allclose(model.predict(clips, verbose=0), expected, atol=1e-3, rtol=0)


def test_shortcut_b_and_odd_clip_sizes_convert_exactly(tmp_path):
    reference = random_resnet3d(10, 7, shortcut="B", seed=1)
    path = str(tmp_path / "resnet-10-b.pth")
    save_like_hara(reference, path, arch="resnet-10", legacy_format=False)
    model = torch_checkpoint.convert(path, "resnet-10", 7)  # Hara's spelling of the architecture
    assert model.name == "resnet3d10"
    clips = _clips(2, 9, 45, seed=2)  # odd sizes: the sampling grid of every strided layer matters
    np.testing.assert_allclose(model.predict(clips, verbose=0), _torch_logits(reference, clips), atol=1e-3, rtol=0)


def test_mismatched_3d_checkpoints_are_named(hara_resnet18, tmp_path):
    _, path = hara_resnet18
    with pytest.raises(ConfigError, match=r"does not match a Hara-layout resnet3d34.*looks like a resnet3d18"):
        torch_checkpoint.convert(path, "resnet3d34")
    with pytest.raises(ConfigError, match="has 400 classes, but a model with 101"):
        torch_checkpoint.convert(path, "resnet3d18", 101)
    with pytest.raises(ConfigError, match="--raw_pixels is for 2D ResNets"):
        torch_checkpoint.convert_file(path, str(tmp_path / "out.keras"), raw_pixels=True)
    with pytest.raises(ConfigError, match="Unknown architecture 'resnet3d50'"):
        torch_checkpoint.convert_file(path, str(tmp_path / "out.keras"), arch="resnet3d50")


def test_converter_writes_a_keras_target_for_clips(hara_resnet18, tmp_path):
    import keras

    reference, path = hara_resnet18
    output = str(tmp_path / "resnet3d18_kinetics.keras")
    summary = torch_checkpoint.convert_file(path, output)
    assert "resnet3d18, 400 classes" in summary
    clips = _clips(1, 16, 112, seed=3)
    loaded = keras.saving.load_model(output, compile=False)
    np.testing.assert_allclose(loaded.predict(clips, verbose=0), _torch_logits(reference, clips), atol=1e-3, rtol=0)
