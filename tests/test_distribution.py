"""Losses and metrics are the same whatever the number of replicas."""

import json

import numpy as np
import pytest

from conftest import run_python


def test_one_and_two_replicas_agree():
    result = run_python(["tests/mirrored_check.py"])
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = json.loads(result.stdout.strip().splitlines()[-1])
    assert (one["replicas"], two["replicas"]) == (1, 2)
    for key in ("loss", "target_loss", "aux_src_loss", "accuracy"):
        assert two["evaluate"][key] == pytest.approx(one["evaluate"][key], rel=1e-5), key
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=key)
    for w_one, w_two in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(w_two), np.array(w_one), atol=1e-5)
    # Training actually moved the weights (the comparison is not vacuous).
    assert one["history"]["loss"][0] != one["history"]["loss"][1]
