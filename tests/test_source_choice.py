"""tools/source_choice.py: candidate sources' scores against the gains their SSKT rows measured."""

import itertools
import json
import os

import numpy as np
import pytest
from helpers.in_process import run_script
from studies import source_choice

from sskt_tf.errors import ConfigError


def test_spearman_matches_hand_computed_ranks():
    assert source_choice.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert source_choice.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks (1, 2, 3, 4) against (2, 1, 4, 3): 1 - 6 * 4 / (4 * 15) = 0.6.
    assert source_choice.spearman([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(0.6)
    # Ties share their average rank: (1, 2.5, 2.5, 4) against (1, 2, 3, 4).
    expected = np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    assert source_choice.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)
    assert np.isnan(source_choice.spearman([1, 1, 1], [1, 2, 3]))


def test_spearman_p_is_exact_over_all_orders_of_a_few_candidates():
    # Only one of the 24 orders of 4 values is perfectly monotone.
    assert source_choice.spearman_p([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1 / 24)
    assert source_choice.spearman_p([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(1.0)
    # rho 0.6 (see above) or more: the orders of (1..4) with sum of squared rank differences <= 4.
    orders = list(itertools.permutations(range(4)))
    better = sum(sum((i - j) ** 2 for i, j in enumerate(order)) <= 4 for order in orders)
    assert source_choice.spearman_p([0.1, 0.2, 0.3, 0.4], [5, 1, 9, 7]) == pytest.approx(better / 24)
    # Beyond 8 values it samples; a strong correlation is still rare under random orders.
    x = np.arange(12.0)
    assert source_choice.spearman_p(x, x + 0.1 * np.sin(x), draws=2000) < 0.01
    # The observed order counts among the draws: p is never 0.
    assert source_choice.spearman_p(x, x, draws=100) == pytest.approx(1 / 101)
    assert np.isnan(source_choice.spearman_p([1, 1, 1], [1, 2, 3]))


def test_candidates_differ_only_when_their_gains_differ_beyond_the_seeds_spread():
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 3, size=4)  # shared by every candidate at a seed: must not count
    separated = [{s: seed_effect[s] + level + rng.normal(0, 0.1) for s in range(4)} for level in (0, 1, 2)]
    assert source_choice.candidates_differ_p(separated, draws=5000) < 0.01
    alike = [{s: seed_effect[s] + rng.normal(0, 1) for s in range(4)} for _ in range(3)]
    assert source_choice.candidates_differ_p(alike, draws=5000) > 0.05
    # Only the seeds all candidates finished count; one seed in common is too few.
    assert np.isnan(source_choice.candidates_differ_p([{0: 1.0, 1: 2.0}, {1: 0.0, 2: 3.0}]))
    assert np.isnan(source_choice.candidates_differ_p([{0: 1.0, 1: 2.0}]))


def test_only_candidates_finished_at_every_seed_enter_the_statistics():
    rows = [
        {"label": "all", "gains": {0: 1.0, 1: 2.0}},
        {"label": "more", "gains": {0: 1.0, 1: 2.0, 5: 0.0}},
        {"label": "one", "gains": {0: 4.0}},
        {"label": "none", "gains": {}},
    ]
    complete, partial = source_choice.split_by_seeds(rows, [0, 1])
    assert [r["label"] for r in complete] == ["all", "more"]
    assert [r["label"] for r in partial] == ["one"]


def _write_result(output_dir, row, seed, accuracy):
    run = output_dir / "t" / row / "col" / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"best_val_accuracy": accuracy}))


def test_gains_are_taken_seed_by_seed_over_the_seeds_both_rows_finished(tmp_path):
    for seed, accuracy in ((0, 0.80), (1, 0.82), (2, 0.81)):
        _write_result(tmp_path, "scratch", seed, accuracy)
    for seed, accuracy in ((0, 0.83), (2, 0.80)):
        _write_result(tmp_path, "sskt", seed, accuracy)
    gains = source_choice.seed_gains(str(tmp_path), "t", "sskt", "scratch", "col", [0, 1, 2])
    assert gains == pytest.approx({0: 3.0, 2: -1.0})


def test_reused_scores_come_from_the_same_candidate_and_the_gains_are_read_again(tmp_path):
    for seed in (0, 1):
        _write_result(tmp_path, "scratch", seed, 0.80)
        _write_result(tmp_path, "a_row", seed, 0.82 + 0.01 * seed)
        _write_result(tmp_path, "b_row", seed, 0.81)
    spec = {"table": "t", "column": "col", "baseline_row": "scratch", "seeds": [0, 1], "rank_flags": []}
    spec["candidates"] = [
        {"label": "a", "source": "a.keras", "row": "a_row"},
        {"label": "b", "source": "b", "row": "b_row"},
    ]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    scored = {"leep": -0.5, "nce": -0.4, "logme": 0.1, "seconds": 3.0, "gain": None}
    previous = {
        "examples": 7,
        "candidates": [
            {**scored, "label": "b", "source": "b", "row": "b_row", "leep": -0.9},
            {**scored, "label": "a", "source": "a.keras", "row": "a_row"},
        ],
    }
    # a.keras does not exist: with reused scores no source is loaded.
    result = source_choice.source_choice(str(spec_path), str(tmp_path), previous=previous)
    a, b = result["candidates"]
    assert (a["leep"], b["leep"], a["seconds"], result["examples"]) == (-0.5, -0.9, 3.0, 7)
    assert a["gain"] == pytest.approx(2.5) and b["gain"] == pytest.approx(1.0)
    assert result["spearman"]["leep"] == pytest.approx(1.0) and result["measured_candidates"] == 2

    previous["candidates"][0]["source"] = "another"
    with pytest.raises(ConfigError, match="no scores for the candidate 'b'"):
        source_choice.source_choice(str(spec_path), str(tmp_path), previous=previous)


@pytest.mark.slow
def test_the_tool_scores_candidates_and_correlates_them_with_gains(tmp_path, digits_folder, tiny_source_path):
    import keras

    # Two candidates: the tiny random CNN, and a copy of it whose logits are all zero (a
    # constant source: it must score lowest).
    keras.utils.set_random_seed(0)
    source = keras.saving.load_model(tiny_source_path)
    dense = source.layers[-1]
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    constant_path = tmp_path / "constant.keras"
    source.save(constant_path)
    output_dir = tmp_path / "out"
    for seed in (0, 1):
        _write_result(output_dir, "scratch", seed, 0.50)
        _write_result(output_dir, "with_tiny", seed, 0.55 + 0.01 * seed)
        _write_result(output_dir, "with_constant", seed, 0.49)
    _write_result(output_dir, "with_tiny_at_8", 0, 0.60)  # one seed of two: shown, not correlated
    spec = {
        "table": "t",
        "column": "col",
        "baseline_row": "scratch",
        "seeds": [0, 1],
        "rank_flags": [f"--dataset=folder:{digits_folder}", "--image_size=16"],
        "candidates": [
            {"label": "tiny", "source": tiny_source_path, "row": "with_tiny"},
            {"label": "constant", "source": "{output_dir}/../constant.keras", "row": "with_constant"},
            # Flags of its own: the same network on blurrier images (its row finished one seed).
            {"label": "tiny at 8", "source": tiny_source_path, "row": "with_tiny_at_8", "flags": ["--image_size=8"]},
            {"label": "not run", "source": tiny_source_path, "row": "not_run"},
        ],
    }
    spec_path = tmp_path / "source_choice.json"  # the outputs are named after it
    spec_path.write_text(json.dumps(spec))
    result = run_script(
        ["tools/source_choice.py", f"--spec={spec_path}", f"--output_dir={output_dir}", "--rank_examples=100"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((output_dir / "t" / "source_choice.json").read_text())
    tiny, constant, blurred, not_run = saved["candidates"]
    assert tiny["gain"] == pytest.approx(5.5) and constant["gain"] == pytest.approx(-1.0)
    assert blurred["leep"] != pytest.approx(tiny["leep"], abs=1e-6) and not_run["gain"] is None
    assert blurred["gain"] == pytest.approx(10.0) and saved["partial_candidates"] == ["tiny at 8"]
    assert tiny["seeds"] == [0, 1] and saved["measured_candidates"] == 2
    assert saved["spearman_p"]["leep"] == pytest.approx(0.5)  # 2 candidates: 1 of 2 orders
    assert 0 < saved["candidates_differ_p"] <= 1
    assert constant["nce"] == pytest.approx(min(tiny["nce"], constant["nce"]))
    assert constant["leep"] < tiny["leep"] and saved["spearman"]["leep"] == pytest.approx(1.0)
    assert (output_dir / "t" / "source_choice.png").read_bytes()[:4] == b"\x89PNG"
    assert "| tiny |" in result.stdout and "Spearman rank correlation" in result.stdout
    assert "+10.00 (0) partial: not in the statistics" in result.stdout

    # The tiny-at-8 row finishes its second seed: the gains refresh, the scores are the saved ones.
    _write_result(output_dir, "with_tiny_at_8", 1, 0.50)
    refreshed = run_script(
        ["tools/source_choice.py", f"--spec={spec_path}", f"--output_dir={output_dir}", "--reuse_scores"]
    )
    assert refreshed.returncode == 0, refreshed.stderr[-3000:]
    again = json.loads((output_dir / "t" / "source_choice.json").read_text())
    assert [row["leep"] for row in again["candidates"]] == [row["leep"] for row in saved["candidates"]]
    assert again["candidates"][2]["gain"] == pytest.approx(5.0) and again["partial_candidates"] == []

    spec["candidates"][0]["source"] = str(tmp_path / "missing.keras")
    spec_path.write_text(json.dumps(spec))
    missing = run_script(["tools/source_choice.py", f"--spec={spec_path}", f"--output_dir={output_dir}"])
    assert missing.returncode == 2 and "missing.keras" in missing.stderr


def test_a_spec_that_names_no_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="Candidate sources not found"):
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"candidates": [{"source": "{output_dir}/x.keras", "row": "r", "label": "x"}]}))
        source_choice.source_choice(str(spec), str(tmp_path))
    assert not os.path.exists(tmp_path / "x.keras")


def test_the_markdown_never_prints_a_small_p_value_as_zero():
    row = {"label": "a", "leep": -0.5, "nce": -0.4, "logme": 0.1, "seconds": 1.0, "gain": 2.0, "seeds": [0, 1]}
    result = {
        "candidates": [row],
        "partial_candidates": [],
        "spearman": {"leep": 0.8, "nce": 0.8, "logme": 0.8},
        "spearman_p": {"leep": 1 / 6, "nce": 1 / 6, "logme": 1 / 6},
        "candidates_differ_p": 0.0034,
        "measured_candidates": 4,
        "seeds": [0, 1],
    }
    markdown = source_choice.format_markdown(result)
    assert "LEEP +0.80 (p = 0.17)" in markdown and "within each seed): 0.003." in markdown
