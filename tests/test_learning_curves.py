"""Learning-curve plots (tools/plot_runs.py, reproduce --plot) from fake histories."""

import io
import json
import os

import numpy as np
import pytest
from helpers.in_process import run_script
from studies import harness, learning_curves

from sskt_tf.errors import ConfigError
from sskt_tf.training.history import read_history, write_history


def _fake_run(run_dir, accuracy_offset, epochs=6, validation_freq=2):
    """A run directory whose history.csv validates every ``validation_freq`` epochs (and the last)."""
    os.makedirs(run_dir, exist_ok=True)
    rows = []
    for epoch in range(epochs):
        rate = 0.1 if epoch < 4 else 0.02
        row = {"epoch": str(epoch + 1), "loss": repr(2.0 / (epoch + 1)), "learning_rate": repr(rate)}
        if (epoch + 1) % validation_freq == 0 or epoch + 1 == epochs:
            row["val_accuracy"] = repr(0.5 + 0.05 * epoch + accuracy_offset)
        rows.append(row)
    write_history(os.path.join(run_dir, "history.csv"), rows)
    return str(run_dir)


def test_aggregate_averages_over_runs_and_skips_epochs_without_validation(tmp_path):
    histories = [
        learning_curves.load_history(_fake_run(tmp_path / f"s{seed}", offset, validation_freq=3))
        for seed, offset in enumerate((0.0, 0.1))
    ]
    epochs, mean, std, count = learning_curves.aggregate(histories, "val_accuracy")
    np.testing.assert_array_equal(epochs, [3, 6])
    np.testing.assert_allclose(mean, [0.65, 0.8])
    np.testing.assert_allclose(std, [np.std([0.6, 0.7], ddof=1)] * 2)
    assert count.tolist() == [2, 2]
    assert learning_curves.aggregate(histories, "loss")[0].tolist() == [1, 2, 3, 4, 5, 6]


def test_plot_has_one_mean_line_per_group_in_each_panel(tmp_path):
    groups = {
        "Scratch": [_fake_run(tmp_path / "a" / f"seed{s}", 0.01 * s) for s in range(3)],
        "SSKT": [_fake_run(tmp_path / "b" / f"seed{s}", 0.1 + 0.01 * s) for s in range(2)],
    }
    output = tmp_path / "curves.png"
    figure = learning_curves.plot_groups(groups, str(output), title="toy")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == [
        "Training loss (loss)",
        "Validation (val_accuracy %)",
        "Learning rate (learning_rate)",
    ]
    for axis in visible:
        assert [line.get_label() for line in axis.get_lines()] == ["Scratch (n=3)", "SSKT (n=2)"]
    validation = visible[1].get_lines()[1]
    np.testing.assert_allclose(validation.get_xdata(), [2, 4, 6])
    np.testing.assert_allclose(validation.get_ydata(), [65.5, 75.5, 85.5])


def test_a_run_without_history_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="has no history.csv"):
        learning_curves.plot_groups({"x": [str(tmp_path)]}, str(tmp_path / "c.png"))
    with pytest.raises(ConfigError, match="no run directory with history.csv matches"):
        learning_curves.groups_from_patterns([f"A={tmp_path}/nothing*"])
    _fake_run(tmp_path / "r1", 0.0)
    _fake_run(tmp_path / "r2", 0.0)
    assert learning_curves.groups_from_patterns([f"A={tmp_path}/r2", f"{tmp_path}/r1", f"A={tmp_path}/r1"]) == {
        "A": [f"{tmp_path}/r2", f"{tmp_path}/r1"],
        f"{tmp_path}/r1": [f"{tmp_path}/r1"],
    }
    # A run still training (no results.json yet) is left out on request.
    (tmp_path / "r1" / "results.json").write_text("{}")
    assert learning_curves.groups_from_patterns([f"A={tmp_path}/r*"], finished_only=True) == {"A": [f"{tmp_path}/r1"]}
    with pytest.raises(ConfigError, match="no run directory with history.csv and results.json"):
        learning_curves.groups_from_patterns([f"A={tmp_path}/r2"], finished_only=True)


@pytest.mark.slow
def test_plot_runs_tool_and_reproduce_plot(tmp_path):
    for row in ("a", "b"):
        for seed in (0, 1):
            run = _fake_run(tmp_path / "runs" / "toy" / row / "c10-r20" / f"seed{seed}", 0.1 * seed)
            with open(os.path.join(run, "results.json"), "w") as f:
                json.dump({"best_val_accuracy": 0.5}, f)
    result = run_script(
        [
            "tools/plot_runs.py",
            f"--runs=A={tmp_path}/runs/toy/a/*/seed*",
            f"--runs={tmp_path}/runs/toy/b/*/seed*",
            f"--output={tmp_path}/tool.png",
        ],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "A (2 runs)" in result.stdout and (tmp_path / "tool.png").exists()
    table = tmp_path / "toy"
    table.mkdir()
    for row in ("a", "b"):
        (table / f"{row}.flags").write_text("--alpha=0.5\n")
    (table / "table.json").write_text(
        json.dumps(
            {
                "title": "Toy",
                "metric": "best_val_accuracy",
                "seeds": [0, 1],
                "rows": [{"name": "a", "label": "A"}, {"name": "b", "label": "B"}],
                "columns": [{"dataset": "c10", "target": "r20", "label": "C10"}],
            }
        )
    )
    out = io.StringIO()
    harness.reproduce([str(table)], output_dir=str(tmp_path / "runs"), collect_only=True, plot=True, out=out)
    assert (tmp_path / "runs" / "toy" / "curves.png").exists() and "curves.png" in out.getvalue()


def test_the_legend_names_a_group_that_lacks_the_first_panels_column(tmp_path):
    # MAXL's history has no target_loss: its curves are missing from the first panel only.
    no_loss = _fake_run(tmp_path / "m" / "seed0", 0.2)
    history_path = os.path.join(no_loss, "history.csv")
    write_history(history_path, [{k: v for k, v in row.items() if k != "loss"} for row in read_history(history_path)])
    groups = {"MAXL": [no_loss], "Scratch": [_fake_run(tmp_path / "a" / "seed0", 0.0)]}
    figure = learning_curves.plot_groups(groups, str(tmp_path / "curves.png"))
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["MAXL (n=1)", "Scratch (n=1)"]


def test_each_group_keeps_one_distinct_colour_and_the_legend_fits_the_figure(tmp_path):
    # The first group lacks the loss panel: the others must keep their colours there.
    groups = {}
    for index in range(11):
        run = _fake_run(tmp_path / f"g{index}" / "seed0", 0.01 * index)
        if index == 0:
            history_path = os.path.join(run, "history.csv")
            rows = [{k: v for k, v in row.items() if k != "loss"} for row in read_history(history_path)]
            write_history(history_path, rows)
        groups[f"Source choice: SSKT with a source trained on airplane and automobile only, variant {index}"] = [run]
    figure = learning_curves.plot_groups(groups, str(tmp_path / "curves.png"))
    colours = {}
    for axis in figure.axes:
        for line in axis.get_lines():
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert all(len(seen) == 1 for seen in colours.values()), colours
    assert len({next(iter(seen)) for seen in colours.values()}) == 11
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()  # the figure is closed once saved
    legend_box = figure.legends[0].get_window_extent(renderer)
    figure_box = figure.bbox
    assert legend_box.x0 >= figure_box.x0 and legend_box.x1 <= figure_box.x1 and legend_box.y0 >= figure_box.y0


def test_sskt_diagnostics_get_panels_averaged_over_sources(tmp_path):
    rows = [
        {
            "epoch": str(epoch + 1),
            "loss": "1.0",
            "aux_a_loss": repr(3.0 - epoch),
            "aux_a_floor": "1.0",
            "aux_a_agreement": repr(0.2 * epoch),
            "aux_b_c_loss": repr(5.0 - epoch),
            "aux_b_c_floor": "2.0",
            "aux_b_c_agreement": repr(0.4 * epoch),
            "val_aux_a_agreement": "0.5",
        }
        for epoch in range(3)
    ]
    os.makedirs(tmp_path / "sskt")
    write_history(str(tmp_path / "sskt" / "history.csv"), rows)
    history = learning_curves.load_history(str(tmp_path / "sskt"))
    np.testing.assert_allclose(history["aux_above_floor"], [2.5, 1.5, 0.5])  # (2, 1, 0) and (3, 2, 1)
    np.testing.assert_allclose(history["aux_agreement"], [0.0, 0.3, 0.6])
    np.testing.assert_allclose(history["val_aux_agreement"], [0.5] * 3)
    figure = learning_curves.plot_groups({"SSKT": [str(tmp_path / "sskt")]}, str(tmp_path / "c.png"))
    titles = [axis.get_title() for axis in figure.axes if axis.get_visible()]
    assert titles[-2:] == [
        "Auxiliary loss above its floor (aux_above_floor)",
        "Heads' top-1 agreement with their sources (val_aux_agreement %)",
    ]
    # A run without the diagnostics (a baseline) has none of the derived columns.
    assert "aux_agreement" not in learning_curves.load_history(_fake_run(tmp_path / "scratch", 0.0))
