"""PyTorch ResNet checkpoints -> Keras: equal logits, every file form, clear errors, Places365 source."""

import os
import sys

import keras
import numpy as np
import pytest
import torch
from helpers.in_process import run_script
from torch_reference import random_resnet, save_like_csail

from sskt_tf import sources
from sskt_tf.errors import ConfigError
from sskt_tf.sources import csail_places365 as places365_lib
from sskt_tf.sources import torch_checkpoint
from sskt_tf.targets import torchvision_resnet

pytestmark = pytest.mark.torch

TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _torch_logits(model, images_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))).numpy()


def _images(size, count=3, seed=0):
    """Preprocessed-scale inputs (roughly unit variance)."""
    return np.random.RandomState(seed).randn(count, size, size, 3).astype(np.float32)


@pytest.fixture(scope="module")
def resnet18_ref():
    return random_resnet("resnet18", 365, seed=0)


@pytest.fixture(scope="module")
def csail_resnet18(resnet18_ref, tmp_path_factory):
    """resnet18 saved exactly as the CSAIL files are: legacy format, state_dict, module. prefix."""
    path = tmp_path_factory.mktemp("csail") / "resnet18_places365.pth.tar"
    save_like_csail(resnet18_ref, path, "resnet18")
    return str(path)


@pytest.mark.parametrize("size", [74, 33])  # the paper's 7/3 upsampled CIFAR size, and an odd size
def test_converted_csail_resnet18_gives_the_torch_logits(resnet18_ref, csail_resnet18, size):
    model = torch_checkpoint.convert(csail_resnet18, "resnet18", 365)
    images = _images(size)
    expected = _torch_logits(resnet18_ref, images)
    assert np.abs(expected).max() > 1.0  # logits large enough for the tolerance to mean something
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-3, rtol=0)


def test_converted_bare_torchvision_resnet50_gives_the_torch_logits(tmp_path):
    # A torchvision ImageNet-style file: the bare state dict, no prefix, zip format.
    reference = random_resnet("resnet50", 1000, seed=1)
    path = str(tmp_path / "resnet50.pth")
    torch.save(reference.state_dict(), path)
    model = torch_checkpoint.convert(path)  # architecture and classes inferred
    assert model.name == "resnet50" and model.output_shape == (None, 1000)
    images = _images(64)
    np.testing.assert_allclose(model.predict(images, verbose=0), _torch_logits(reference, images), atol=1e-3, rtol=0)


def test_stage_outputs_are_named_for_the_transfer_module():
    model = torchvision_resnet.build("resnet34", 10, input_shape=(64, 64, 3))
    shapes = [model.get_layer(f"layer{i}").output.shape[1:] for i in range(1, 5)]
    assert shapes == [(16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512)]


def test_state_dict_reading_unwraps_and_strips(resnet18_ref, csail_resnet18, tmp_path):
    state = torch_checkpoint.read_state_dict(csail_resnet18)
    assert "conv1.weight" in state and not any(k.startswith("module.") or "num_batches" in k for k in state)
    assert torch_checkpoint.infer_arch(state) == "resnet18" and state["fc.weight"].shape == (365, 512)
    npz = tmp_path / "state.npz"
    np.savez(npz, **{f"module.{k}": v for k, v in state.items()})  # prefix is stripped from .npz too
    from_npz = torch_checkpoint.read_state_dict(str(npz))
    assert from_npz.keys() == state.keys()
    np.testing.assert_array_equal(from_npz["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])


def test_other_checkpoint_layouts_are_read(csail_resnet18, tmp_path):
    tensors = torch.load(csail_resnet18, weights_only=True)["state_dict"]
    reference_script = {"model": tensors, "optimizer": {"state": {}}, "epoch": 3, "args": "lr=0.1"}
    bare_with_metadata = dict(tensors, arch="resnet18", best_prec1=54.6)
    for index, checkpoint in enumerate([reference_script, bare_with_metadata]):
        path = str(tmp_path / f"layout{index}.pth")
        torch.save(checkpoint, path)
        state = torch_checkpoint.read_state_dict(path)
        assert (
            "arch" not in state
            and "best_prec1" not in state
            and len(state) == len(torch_checkpoint.read_state_dict(csail_resnet18))
        )


def test_npz_conversion_needs_no_torch(csail_resnet18, resnet18_ref, tmp_path, monkeypatch):
    npz = str(tmp_path / "state.npz")
    np.savez(npz, **torch_checkpoint.read_state_dict(csail_resnet18))
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    model = torch_checkpoint.convert(npz, "resnet18", 365)
    images = _images(40)
    monkeypatch.undo()
    np.testing.assert_allclose(model.predict(images, verbose=0), _torch_logits(resnet18_ref, images), atol=1e-3, rtol=0)


def test_csail_checkpoints_convert_without_torch(csail_resnet18, resnet18_ref, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    model = torch_checkpoint.convert(csail_resnet18, "resnet18", 365)  # the legacy format of the 2017 files
    images = _images(40)
    monkeypatch.undo()
    np.testing.assert_allclose(model.predict(images, verbose=0), _torch_logits(resnet18_ref, images), atol=1e-3, rtol=0)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(
        ConfigError, match=r"--trust_pickle reads .* torch is not installed: pip install -e \"\.\[convert\]\""
    ):
        torch_checkpoint.convert(csail_resnet18, trust_pickle=True)


def _save_state(state, path):
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, path)
    return str(path)


def test_bad_checkpoints_name_the_problem(csail_resnet18, tmp_path):
    state = torch_checkpoint.read_state_dict(csail_resnet18)
    with pytest.raises(
        ConfigError,
        match=r"does not match a torchvision resnet50: \d+ keys missing.*looks like a resnet18.*--arch=resnet18",
    ):
        torch_checkpoint.convert(csail_resnet18, "resnet50")
    with pytest.raises(ConfigError, match="has 365 classes, but a model with 10 was asked for"):
        torch_checkpoint.convert(csail_resnet18, "resnet18", 10)
    missing = dict(state)
    del missing["layer3.0.downsample.1.running_mean"]
    with pytest.raises(ConfigError, match=r"1 keys missing \(layer3\.0\.downsample\.1\.running_mean\)"):
        torch_checkpoint.convert(_save_state(missing, tmp_path / "missing.pth"), "resnet18")
    extra = dict(state, **{"head.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ConfigError, match=r"1 unexpected keys \(head\.weight\)"):
        torch_checkpoint.convert(_save_state(extra, tmp_path / "extra.pth"), "resnet18")
    wrong_shape = dict(state, **{"layer2.0.conv1.weight": np.zeros((128, 64, 5, 5), np.float32)})
    with pytest.raises(ConfigError, match=r"layer2\.0\.conv1\.weight has shape \(128, 64, 5, 5\)"):
        torch_checkpoint.convert(_save_state(wrong_shape, tmp_path / "shape.pth"), "resnet18")
    with pytest.raises(ConfigError, match="neither a torchvision ResNet .* nor a Hara 3D ResNet"):
        torch_checkpoint.convert(_save_state({"w": np.zeros(3, np.float32)}, tmp_path / "other.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="holds no state dict"):
        torch_checkpoint.convert(str(tmp_path / "list.pth"))
    (tmp_path / "corrupt.pth").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ConfigError, match="Could not read PyTorch checkpoint"):
        torch_checkpoint.convert(str(tmp_path / "corrupt.pth"))
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ConfigError, match="Unknown checkpoint format"):
        torch_checkpoint.convert(str(tmp_path / "model.onnx"))
    with pytest.raises(ConfigError, match="does not exist"):
        torch_checkpoint.convert(str(tmp_path / "nowhere.pth.tar"))
    with pytest.raises(ConfigError, match="Unknown torchvision ResNet 'resnet9'"):
        torchvision_resnet.build("resnet9", 10)


class _Opaque:
    """An object torch's safe (weights-only) loader refuses to unpickle."""


def test_pickled_objects_need_trust(csail_resnet18, tmp_path):
    checkpoint = {"state_dict": torch.load(csail_resnet18, weights_only=True)["state_dict"], "extra": _Opaque()}
    path = str(tmp_path / "pickled.pth.tar")
    torch.save(checkpoint, path)
    with pytest.raises(ConfigError, match=r"(?s)holds a \S*_Opaque object.*If you trust its origin.*--trust_pickle"):
        torch_checkpoint.convert(path)
    assert torch_checkpoint.convert(path, trust_pickle=True).name == "resnet18"


@pytest.mark.slow
def test_convert_tool_command_line(csail_resnet18, tmp_path):
    output = tmp_path / "converted" / "resnet18_places365.keras"
    args = [
        "tools/convert_torch_resnet.py",
        f"--checkpoint={csail_resnet18}",
        "--arch=resnet18",
        "--num_classes=365",
        f"--output={output}",
    ]
    result = run_script(args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(resnet18, 365 classes, " in result.stdout and os.path.exists(output)
    before = output.read_bytes()
    again = run_script(args)  # an existing output is kept unless --overwrite
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr
    assert output.read_bytes() == before
    missing = run_script(["tools/convert_torch_resnet.py", f"--output={tmp_path / 'z.keras'}"])
    assert missing.returncode == 2 and "--checkpoint must have a value" in missing.stderr


@pytest.mark.slow
def test_every_output_format_reloads_to_the_torch_logits(resnet18_ref, csail_resnet18, tmp_path):
    outputs = [str(tmp_path / f"places{suffix}") for suffix in torch_checkpoint.OUTPUT_SUFFIXES]
    for output in outputs:
        assert output in torch_checkpoint.convert_file(csail_resnet18, output, "resnet18", 365)
    images = _images(48)
    expected = _torch_logits(resnet18_ref, images)
    for output in outputs:
        model = torch_checkpoint.load(output, "resnet18", 365)
        np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-3, rtol=0)
    with pytest.raises(ConfigError, match="holds a resnet18, not a resnet50"):
        torch_checkpoint.load(outputs[0], "resnet50", 365)
    with pytest.raises(ConfigError, match="Could not load .* into a resnet18 with 10 classes"):
        torch_checkpoint.load(outputs[1], "resnet18", 10)


@pytest.mark.slow
def test_raw_pixel_model_applies_torchvision_normalize(resnet18_ref, csail_resnet18, tmp_path):
    raw = str(tmp_path / "places_raw.keras")
    torch_checkpoint.convert_file(csail_resnet18, raw, raw_pixels=True)
    pixels = np.random.RandomState(3).uniform(0, 255, (3, 48, 48, 3)).astype(np.float32)
    raw_model = keras.saving.load_model(raw, compile=False)
    expected = _torch_logits(resnet18_ref, (pixels / 255.0 - TORCH_MEAN) / TORCH_STD)
    np.testing.assert_allclose(raw_model.predict(pixels, verbose=0), expected, atol=1e-3, rtol=0)
    source = sources.from_spec(raw, 48)  # usable as a plain --sources=PATH
    np.testing.assert_allclose(source(pixels), expected, atol=1e-3, rtol=0)
    with pytest.raises(ConfigError, match="converted with --raw_pixels"):
        torch_checkpoint.load(raw, "resnet18", 365)


def test_convert_file_errors(csail_resnet18, tmp_path):
    cases = [
        (dict(output=str(tmp_path / "x.onnx")), "must end in one of"),
        (dict(output=str(tmp_path / "x.npz"), raw_pixels=True), "needs a .keras --output"),
        (dict(output=str(tmp_path / "y.keras"), arch="resnet34"), "looks like a resnet18"),
        (
            dict(output=str(tmp_path / "y.keras"), arch="resnet9"),
            "Unknown architecture .resnet9.*resnet3d18",
        ),
        (dict(output=str(tmp_path / "y.keras"), num_classes=-1), "--num_classes must be >= 0"),
        (dict(output=str(tmp_path / "y.npz"), num_classes=10), "has 365 classes"),  # checked for .npz too
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError, match=message):
            torch_checkpoint.convert_file(csail_resnet18, **kwargs)
    assert not (tmp_path / "y.keras").exists() and not (tmp_path / "y.npz").exists()


def test_places365_source_from_a_converted_file(resnet18_ref, csail_resnet18, tmp_path):
    converted = str(tmp_path / "resnet18_places365.keras")
    torch_checkpoint.convert(csail_resnet18, "resnet18", 365).save(converted)
    source = sources.from_spec("places365/resnet18", 16, source_image_size=40, weights=converted)
    assert source.name == "places365_resnet18" and source.num_classes == 365 and source.input_size == (40, 40)
    pixels = np.random.RandomState(1).uniform(0, 255, (2, 40, 40, 3)).astype(np.float32)  # no resize at 40
    expected = _torch_logits(resnet18_ref, (pixels / 255.0 - TORCH_MEAN) / TORCH_STD)
    np.testing.assert_allclose(source(pixels), expected, atol=1e-3, rtol=0)


def _fake_get_file(checkpoint, calls):
    """A keras.utils.get_file that "downloads" ``checkpoint`` where the real one would."""
    import shutil

    def get_file(fname, origin, cache_subdir, cache_dir):
        calls.append(origin)
        target = os.path.join(cache_dir, cache_subdir, fname)
        assert os.path.isdir(os.path.dirname(target))  # else Keras would fall back to /tmp/.keras
        shutil.copy(checkpoint, target)
        return target

    return get_file


@pytest.mark.slow
def test_places365_download_is_converted_once_and_cached(csail_resnet18, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(keras.utils, "get_file", _fake_get_file(csail_resnet18, calls))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    source = sources.places365("resnet18", input_size=32)
    assert calls == ["http://places2.csail.mit.edu/models_places365/resnet18_places365.pth.tar"]
    cached = sources.places365_cache_path("resnet18")
    assert cached == str(tmp_path / "home" / "models" / "resnet18_places365.keras") and os.path.exists(cached)
    assert sorted(os.listdir(tmp_path / "home" / "models")) == [
        "resnet18_places365.keras",
        "resnet18_places365.pth.tar",
    ]
    again = sources.places365("resnet18", input_size=32)
    assert len(calls) == 1  # read from the cache, not downloaded again
    pixels = np.random.RandomState(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(source(pixels), again(pixels), atol=1e-5)


def test_broken_downloads_and_caches_say_what_to_delete(csail_resnet18, tmp_path, monkeypatch):
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(open(csail_resnet18, "rb").read()[:5000])
    monkeypatch.setattr(keras.utils, "get_file", _fake_get_file(str(truncated), []))
    home = tmp_path / "home"
    with pytest.raises(
        ConfigError,
        match=r"(?s)Could not read PyTorch checkpoint.*delete .*resnet18_places365\.pth\.tar to download it again",
    ):
        sources.places365("resnet18", cache_dir=str(home))
    cached = sources.places365_cache_path("resnet18", str(home))
    open(cached, "w").write("not a keras file")
    with pytest.raises(
        ConfigError, match=r"(?s)is not a .keras archive.*Delete .*resnet18_places365\.keras to download and convert"
    ):
        sources.places365("resnet18", cache_dir=str(home))


def test_a_cache_that_cannot_be_written_costs_only_a_warning(tmp_path, caplog):
    model = torchvision_resnet.build("resnet18", 3)
    places365_lib._cache_model(model, str(tmp_path / "missing_dir" / "resnet18_places365.keras"))
    assert "Could not cache the converted checkpoint" in caplog.text
    assert not (tmp_path / "missing_dir").exists()


def test_places365_download_failure_and_unpublished_arch(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(
        ConfigError,
        match=r"(?s)Could not download the Places365 resnet50.*convert_torch_resnet\.py "
        r"--checkpoint resnet50_places365\.pth\.tar --arch resnet50 --num_classes 365",
    ):
        sources.places365("resnet50", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="CSAIL publishes Places365 weights for resnet18 and resnet50 only"):
        sources.places365("resnet34", cache_dir=str(tmp_path))
    monkeypatch.setitem(sys.modules, "torch", None)  # the download is converted without torch
    with pytest.raises(ConfigError, match="Could not download the Places365 resnet50"):
        sources.places365("resnet50", cache_dir=str(tmp_path))
