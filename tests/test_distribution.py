"""Losses and metrics are the same whatever the number of replicas."""

import json

import numpy as np
import pytest
from helpers.processes import run_python


@pytest.fixture(scope="module")
def replica_runs():
    """Each method trained with 1 and with 2 replicas, in one process."""
    result = run_python(["tests/helpers/mirrored_check.py", "sskt", "kd", "dml", "maxl"])
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    for one, two in runs.values():
        assert (one["replicas"], two["replicas"]) == (1, 2)
    return runs


@pytest.mark.parametrize(
    "method, keys",
    [
        ("sskt", ("loss", "target_loss", "aux_src_loss", "accuracy")),
        ("kd", ("loss", "target_loss", "kd_loss", "accuracy")),
        ("dml", ("loss", "target_loss", "mutual_loss", "peer2_target_loss", "accuracy", "peer2_accuracy")),
    ],
)
@pytest.mark.slow
def test_one_and_two_replicas_agree(method, keys, replica_runs):
    one, two = replica_runs[method]
    for key in keys:
        assert two["evaluate"][key] == pytest.approx(one["evaluate"][key], rel=1e-5), key
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=key)
    for w_one, w_two in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(w_two), np.array(w_one), atol=1e-5)
    # Training actually moved the weights (the comparison is not vacuous).
    assert one["history"]["loss"][0] != one["history"]["loss"][1]


@pytest.mark.slow
def test_maxl_two_replicas_with_the_same_local_batch_match_one_device(replica_runs):
    # Its inner SGD step uses each replica's local batch (README), so it matches one
    # device exactly when both replicas hold the same batch: the meta step, the entropy
    # term and the generator's update are all compared through the trained weights.
    one, two = replica_runs["maxl"]
    for key in ("loss", "primary_loss", "auxiliary_loss", "meta_loss", "entropy_loss", "accuracy"):
        np.testing.assert_allclose(two["history"][key], one["history"][key], rtol=1e-4, err_msg=key)
    for w_one, w_two in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(w_two), np.array(w_one), atol=1e-5)
    assert one["history"]["meta_loss"][0] != one["history"]["meta_loss"][1]
