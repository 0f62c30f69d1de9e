"""Reading torch.save files without torch: the same arrays as torch.load, and nothing but arrays."""

import os
import pickle

import numpy as np
import pytest
import torch

from sskt_tf.errors import ConfigError
from sskt_tf.sources import torch_pickle

pytestmark = pytest.mark.torch


def _checkpoint():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "contiguous": base,
        "transposed": base.t(),  # strides (1, 6)
        "view": base[1:3, 2:5],  # an offset into a shared storage
        "half": torch.randn(3, 2, generator=torch.Generator().manual_seed(0)).half(),
        "long": torch.tensor([1, 2, 3]),
        "bool": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "layer.weight": torch.nn.Parameter(torch.ones(2, 2)),
    }
    return {"state_dict": state, "epoch": 90, "arch": "resnet18", "best_prec1": 54.65, "history": [torch.ones(2), 3]}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_same_arrays_as_torch_load_in_both_formats(tmp_path, legacy):
    path = str(tmp_path / "checkpoint.pth")
    torch.save(_checkpoint(), path, _use_new_zipfile_serialization=not legacy)
    ours, reference = torch_pickle.load(path), torch.load(path, weights_only=True)
    assert ours.keys() == reference.keys() and ours["state_dict"].keys() == reference["state_dict"].keys()
    for name, tensor in reference["state_dict"].items():
        expected = tensor.detach().numpy()
        assert isinstance(ours["state_dict"][name], np.ndarray) and ours["state_dict"][name].dtype == expected.dtype
        np.testing.assert_array_equal(ours["state_dict"][name], expected, err_msg=name)
    assert (ours["epoch"], ours["arch"], ours["best_prec1"]) == (90, "resnet18", 54.65)
    np.testing.assert_array_equal(ours["history"][0], np.ones(2, np.float32))


class _Payload:
    """Pickles as a call that would leave a file behind if it ever ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_any_other_object_is_refused_by_name_and_never_built(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = str(tmp_path / "payload.pth")
    torch.save(
        {"state_dict": {"w": torch.ones(1)}, "hook": _Payload(str(marker))},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    with pytest.raises(torch_pickle.UntrustedObjectError, match=r"holds a (io|builtins)\.open object"):
        torch_pickle.load(path)
    assert not marker.exists()


def test_a_payload_in_place_of_the_legacy_header_is_refused_too(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "header.pth"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))  # where the magic number belongs
    with pytest.raises(torch_pickle.UntrustedObjectError, match=r"holds a (io|builtins)\.open object"):
        torch_pickle.load(str(path))
    assert not marker.exists()


def test_files_that_are_not_torch_checkpoints_are_clear_errors(tmp_path):
    cases = {
        "text.pth": b"not a checkpoint",
        "plain_pickle.pth": pickle.dumps({"w": [1.0]}),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ConfigError, match="Could not read PyTorch checkpoint.*not a torch.save file"):
            torch_pickle.load(str(tmp_path / name))
    whole = tmp_path / "whole.pth"
    torch.save({"w": torch.ones(1000)}, str(whole), _use_new_zipfile_serialization=False)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(whole.read_bytes()[: os.path.getsize(whole) - 100])
    with pytest.raises(ConfigError, match="ends inside a tensor"):
        torch_pickle.load(str(truncated))
