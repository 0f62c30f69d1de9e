"""tools/rank_sources.py: candidate sources scored on a folder dataset, from running them or
from their soft-label cache, and bad inputs refused."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from helpers.in_process import run_script

from sskt_tf import training
from sskt_tf.errors import ConfigError
from sskt_tf.sources import ranking as ranking_lib
from sskt_tf.sources import transferability
from sskt_tf.training import run_sources
from sskt_tf.training.config import TrainConfig
from sskt_tf.training.run_sources import source_outputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def second_source_path(tmp_path_factory):
    """Another small random CNN: 16x16 raw-pixel input, 3 logits."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)), name="other")
    path = tmp_path_factory.mktemp("second_source") / "other.keras"
    model.save(path)
    return str(path)


def _config(digits_folder, sources, **changes):
    return TrainConfig(dataset=f"folder:{digits_folder}", image_size=16, sources=list(sources), **changes)


def test_the_tool_ranks_two_keras_sources_and_their_pair(tmp_path, digits_folder, tiny_source_path, second_source_path):
    output = tmp_path / "ranking.json"
    result = run_script(
        [
            "tools/rank_sources.py",
            f"--dataset=folder:{digits_folder}",
            "--image_size=16",
            f"--sources={tiny_source_path},{second_source_path}",
            "--rank_examples=200",
            "--rank_by=logme",
            f"--output={output}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranking = json.loads(output.read_text())
    assert ranking["examples"] == 200 and ranking["classes"] == 10 and ranking["rank_by"] == "logme"
    singles = [row for row in ranking["rows"] if len(row["sources"]) == 1]
    assert sorted(row["sources"][0] for row in singles) == ["other", "tiny"]
    assert [row["logme"] for row in singles] == sorted((row["logme"] for row in singles), reverse=True)
    assert {row["classes"] for row in singles} == {5, 3}
    (pair,) = [row for row in ranking["rows"] if len(row["sources"]) == 2]
    assert pair["classes"] == 15
    # Together the two predict at least as well as either top-1 alone.
    assert pair["nce"] >= max(row["nce"] for row in singles) - 1e-12
    for row in ranking["rows"]:
        assert row["leep"] <= 0 and row["nce"] <= 0 and np.isfinite(row["logme"]) and row["seconds"] >= 0
    assert "| source | classes | LEEP | NCE | LogME | seconds |" in result.stdout
    assert "| tiny + other |" in result.stdout or "| other + tiny |" in result.stdout


def test_scores_from_a_cache_equal_scores_from_running_the_sources(tmp_path, digits_folder, tiny_source_path):
    config = _config(digits_folder, [tiny_source_path], augment=False, seed=3)
    run = source_outputs(config)
    cached_config = dataclasses.replace(config, soft_label_cache=str(tmp_path / "cache"))
    training.build_soft_label_cache(cached_config, views=1, dtype="float32")
    cached = source_outputs(cached_config)
    assert cached.names == run.names and cached.seconds == [0.0]
    np.testing.assert_array_equal(np.sort(cached.labels), np.sort(run.labels))
    # Both in the order the cache fixes (its --seed); the same images, so the same scores.
    order_run, order_cached = np.lexsort(run.logits[0].T), np.lexsort(cached.logits[0].T)
    np.testing.assert_allclose(cached.logits[0][order_cached], run.logits[0][order_run], atol=1e-4)
    for score in (transferability.nce, transferability.logme):
        assert score(cached.logits[0], cached.labels) == pytest.approx(score(run.logits[0], run.labels), abs=1e-4)
    ranking = run_sources.rank(cached_config, pairs=False)
    assert ranking["rows"][0]["leep"] == pytest.approx(
        transferability.leep(ranking_lib.softmax(run.logits[0]), run.labels), abs=1e-4
    )


def test_a_top_k_cache_gives_leep_and_nce_and_leaves_logme_out(tmp_path, digits_folder, tiny_source_path):
    # LogME would regress on the cache's constant fill in place of the dropped logits.
    config = _config(digits_folder, [tiny_source_path], augment=False, soft_label_cache=str(tmp_path / "cache"))
    training.build_soft_label_cache(config, views=1, top_k=2, dtype="float32")
    ranking = run_sources.rank(config, pairs=False)
    (row,) = ranking["rows"]
    assert ranking["top_k"] == 2 and row["logme"] is None and np.isfinite(row["leep"]) and np.isfinite(row["nce"])
    table = ranking_lib.format_table(ranking)
    assert "LogME left out (–): the cache keeps each source's top 2 logits" in table and "| – |" in table
    with pytest.raises(ConfigError, match="--rank_by=logme needs every logit.*top 2"):
        run_sources.rank(config, rank_by="logme")


def test_candidates_with_the_same_file_name_go_by_their_paths(tmp_path, digits_folder, tiny_source_path):
    copy = tmp_path / "copy" / "tiny.keras"
    copy.parent.mkdir()
    copy.write_bytes(open(tiny_source_path, "rb").read())
    ranking = run_sources.rank(_config(digits_folder, [tiny_source_path, str(copy)]), rank_examples=50)
    assert {row["sources"][0] for row in ranking["rows"] if len(row["sources"]) == 1} == {tiny_source_path, str(copy)}
    assert [row["specs"] for row in ranking["rows"] if len(row["sources"]) == 2] == [[tiny_source_path, str(copy)]]


def test_bad_inputs_are_clear_errors(tmp_path, digits_folder, tiny_source_path):
    with pytest.raises(ConfigError, match="--sources is empty"):
        run_sources.rank(_config(digits_folder, []))
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="broken.keras"):
        run_sources.rank(_config(digits_folder, [str(broken)]))
    with pytest.raises(ConfigError, match="train_examples_per_class=1000"):
        run_sources.rank(_config(digits_folder, [tiny_source_path], train_examples_per_class=1000))
    with pytest.raises(ConfigError, match="fewer than two classes"):
        run_sources.rank(_config(digits_folder, [tiny_source_path], classes=["digit3"]))
    refused = run_script(["tools/rank_sources.py", f"--sources={tiny_source_path}", "--rank_examples=-1"])
    assert refused.returncode == 2 and "--rank_examples=-1" in refused.stderr
