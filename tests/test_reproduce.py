"""tools/reproduce.py: the paper's tables as grids of runs, from fake runs (no training here)."""

import glob
import io
import json
import os
import re
import sys

import pytest
from helpers.in_process import run_script
from helpers.processes import REPO
from helpers.train_flags import train_config
from studies import harness

from sskt_tf.errors import ConfigError

PAPER = os.path.join(REPO, "configs", "paper")

# Stands in for tools/train.py: exits 2 for --dataset=bad, else writes a results.json
# whose accuracy is 0.5 + seed / 100 into --model_dir.
FAKE_TRAIN = """
import json, os, sys
args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if "=" in arg)
print("fake training", args["model_dir"])
if args["dataset"] == "bad":
    print("error: no such dataset")
    sys.exit(2)
with open(os.path.join(args["model_dir"], "results.json"), "w") as f:
    json.dump({"best_val_accuracy": 0.5 + int(args["seed"]) / 100}, f)
"""


def _write_table(root, columns=(("c10", "r20"), ("c100", "r20")), seeds=(0, 1, 2), paper=None):
    """A table ``root/toy`` with rows ``a`` and ``b`` (label A, B) over ``columns`` of (dataset, target)."""
    table = root / "toy"
    table.mkdir()
    for row in ("a", "b"):
        (table / f"{row}.flags").write_text(f"# row {row}\n--alpha=0.5\n--model_path={{output_dir}}/{{dataset_slug}}\n")
    (table / "table.json").write_text(
        json.dumps(
            {
                "title": "Toy",
                "metric": "best_val_accuracy",
                "scale": 100,
                "seeds": list(seeds),
                "rows": [{"name": "a", "label": "A"}, {"name": "b", "label": "B"}],
                "columns": [{"dataset": d, "target": t, "label": f"{d}/{t}"} for d, t in columns],
                "paper": paper or {},
            }
        )
    )
    return str(table)


def _fake_result(output_dir, row, column, seed, value):
    run = os.path.join(output_dir, "toy", row, column, f"seed{seed}")
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "results.json"), "w") as f:
        json.dump({"best_val_accuracy": value, "val_accuracy": value, "epochs": 200}, f)


def test_results_table_from_fake_runs(tmp_path):
    table = _write_table(tmp_path, paper={"b": {"c100-r20": "70.00±1.00"}})
    output_dir = str(tmp_path / "runs")
    for seed, value in enumerate((0.90, 0.91, 0.92)):
        _fake_result(output_dir, "a", "c10-r20", seed, value)
    _fake_result(output_dir, "a", "c100-r20", 0, 0.8)
    _fake_result(output_dir, "b", "c10-r20", 0, 0.5)
    _fake_result(output_dir, "b", "c10-r20", 1, 0.6)
    _fake_result(output_dir, "b", "c10-r20", 7, 0.0)  # a seed the table does not ask for: ignored
    out = io.StringIO()
    assert harness.reproduce([table], output_dir=output_dir, collect_only=True, out=out) == []
    text = (tmp_path / "runs" / "toy" / "results.md").read_text()
    assert text in out.getvalue()
    assert "| Method | c10/r20 | c100/r20 |\n|---|---|---|\n" in text
    assert "| A | 91.00 ± 1.00 | 80.00 (n=1) |\n" in text
    assert "| B | 55.00 ± 7.07 (n=2) | – (paper: 70.00±1.00) |\n" in text
    records = json.loads((tmp_path / "runs" / "toy" / "results.json").read_text())
    assert len(records) == 6
    assert records[0] == {
        "row": "a",
        "column": "c10-r20",
        "dataset": "c10",
        "target": "r20",
        "seed": 0,
        "metric": "best_val_accuracy",
        "value": 0.9,
        "path": os.path.join("a", "c10-r20", "seed0", "results.json"),  # relative to the table's directory
    }


def test_paired_differences_with_a_t_interval_over_shared_seeds(tmp_path):
    table = _write_table(tmp_path)
    spec = json.loads((tmp_path / "toy" / "table.json").read_text())
    (tmp_path / "toy" / "table.json").write_text(json.dumps(dict(spec, comparisons=[{"row": "a", "against": ["b"]}])))
    output_dir = str(tmp_path / "runs")
    for seed, (a, b) in enumerate(((0.90, 0.85), (0.92, 0.86), (0.91, 0.88))):
        _fake_result(output_dir, "a", "c10-r20", seed, a)
        _fake_result(output_dir, "b", "c10-r20", seed, b)
    _fake_result(output_dir, "a", "c100-r20", 0, 0.8)  # b has no c100 run: nothing to pair
    harness.reproduce([table], output_dir=output_dir, collect_only=True, out=io.StringIO())
    text = (tmp_path / "runs" / "toy" / "results.md").read_text()
    # Differences 5, 6, 3: mean 4.67, std 1.53, t(2) = 4.303: half-width 3.79.
    assert "| A | B | c10/r20 | +4.67 | [+0.87, +8.46] | 0, 1, 2 |" in text
    assert "| A | B | c100/r20 | – | – | – |" in text
    one = harness.paired_difference({0: 90.0, 1: 91.0}, {1: 89.5, 2: 80.0})
    assert one == {"seeds": [1], "differences": [1.5], "mean": 1.5, "low": None, "high": None}
    (tmp_path / "toy" / "table.json").write_text(json.dumps(dict(spec, comparisons=[{"row": "a", "against": ["z"]}])))
    with pytest.raises(ConfigError, match="the comparison names 'z', which is not a row"):
        harness.load_table(table)


def test_format_cell():
    assert harness.format_cell([92.0, 93.0, 94.0], 3) == "93.00 ± 1.00"
    assert harness.format_cell([92.0, 93.0, 94.0], 3, digits=1, paper="92.46±0.15") == "93.0 ± 1.0 (paper: 92.46±0.15)"
    assert harness.format_cell([91.234], 1) == "91.23 (n=1)"
    assert harness.format_cell([None], 3) == "–"


def test_dry_run_lists_required_teachers_then_the_grid_with_placeholders_expanded(tmp_path):
    output_dir = str(tmp_path / "runs")
    out = io.StringIO()
    harness.reproduce(
        [f"{PAPER}/cifar"],
        seeds=[0, 1],
        rows=["kd", "sskt_pi"],
        columns=["cifar10-resnet20", "cifar100-resnet32"],
        output_dir=output_dir,
        extra_flags="--epochs=1 --steps_per_epoch=2",
        dry_run=True,
        out=out,
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 + 2 * 2 * 2  # two teachers (seed 0), then kd and sskt_pi x 2 columns x 2 seeds
    assert "{" not in out.getvalue() and not os.path.exists(output_dir)
    assert [line.split("--model_dir=")[1].split()[0] for line in lines[:3]] == [
        f"{output_dir}/teachers/scratch/cifar10-resnet110/seed0",
        f"{output_dir}/teachers/scratch/cifar100-resnet110/seed0",
        f"{output_dir}/cifar/kd/cifar10-resnet20/seed0",
    ]
    assert lines[2].endswith(
        f" --flagfile={PAPER}/cifar/kd.flags --teacher={output_dir}/teachers/scratch/cifar10-resnet110/seed0/best.keras"
        f" --dataset=cifar10 --target=resnet20 --seed=0 --model_dir={output_dir}/cifar/kd/cifar10-resnet20/seed0"
        " --epochs=1 --steps_per_epoch=2"
    )
    assert lines[-1].split("--flagfile=")[1] == (
        f"{PAPER}/cifar/sskt_pi.flags --dataset=cifar100 --target=resnet32 --seed=1 "
        f"--model_dir={output_dir}/cifar/sskt_pi/cifar100-resnet32/seed1 --epochs=1 --steps_per_epoch=2"
    )


@pytest.mark.slow
def test_cli_dry_run_with_column_flags():
    result = run_script(
        [
            "tools/reproduce.py",
            "--table=voc2007",
            "--rows=sskt_p",
            "--columns=voc_2007-resnet50",
            "--seeds=3",
            "--dry_run",
            "--output_dir=out",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(
        "/voc2007/sskt_p.flags --image_size=224 --target_loss=bce --dataset=voc/2007 --target=resnet50 --seed=3 "
        "--model_dir=out/voc2007/sskt_p/voc_2007-resnet50/seed3"
    )


def test_grid_skips_finished_cells_and_goes_on_after_a_failure(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    table = _write_table(tmp_path, columns=(("bad", "r20"), ("good", "r20")), seeds=(0, 1))
    output_dir = str(tmp_path / "runs")
    _fake_result(output_dir, "a", "good-r20", 0, 0.7)
    out = io.StringIO()
    failed = harness.reproduce([table], output_dir=output_dir, train_command=(sys.executable, str(script)), out=out)
    text = out.getvalue()
    assert sorted(cell.description for cell, _ in failed) == [
        f"toy/{row} bad-r20 seed{seed}" for row in ("a", "b") for seed in (0, 1)
    ]
    assert "[3/8] toy/a good-r20 seed0 ... skipped (results.json exists)" in text
    assert "[4/8] toy/a good-r20 seed1 ... done in " in text and "best_val_accuracy=0.5100" in text
    assert "[1/8] toy/a bad-r20 seed0 ... FAILED after" in text and "error: no such dataset" in text
    assert "4 of 8 cells failed:" in text
    assert not os.path.exists(os.path.join(output_dir, "toy", "a", "good-r20", "seed0", "train.log"))
    log = (tmp_path / "runs" / "toy" / "b" / "good-r20" / "seed1" / "train.log").read_text()
    assert "--model_path=" + output_dir + "/good" in log and "fake training" in log  # placeholder expanded
    assert "| A | – | 60.50 ± 13.44 |" in text and "| B | – | 50.50 ± 0.71 |" in text


def test_a_run_of_one_more_seed_keeps_the_tables_other_seeds(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    table = _write_table(tmp_path, columns=(("good", "r20"),), seeds=(0, 1))
    output_dir = str(tmp_path / "runs")
    for seed in (0, 1):
        _fake_result(output_dir, "a", "good-r20", seed, 0.7)
    train = (sys.executable, str(script))
    out = io.StringIO()
    assert harness.reproduce([table], seeds=[2], rows=["a"], output_dir=output_dir, train_command=train, out=out) == []
    text = (tmp_path / "runs" / "toy" / "results.md").read_text()
    assert "over seeds 0, 1, 2;" in text and "| A | 64.00 ± 10.39 |" in text  # 70, 70 and the new 52
    # --collect_only --seeds=... shows exactly the seeds asked for.
    harness.reproduce([table], seeds=[2], output_dir=output_dir, collect_only=True, out=io.StringIO())
    assert "| A | 52.00 (n=1) |" in (tmp_path / "runs" / "toy" / "results.md").read_text()


def test_bad_tables_are_refused(tmp_path):
    table = _write_table(tmp_path)
    with open(os.path.join(table, "a.flags"), "a") as f:
        f.write("--seed=3\n")
    with pytest.raises(ConfigError, match="--seed"):
        harness.load_table(table)
    spec = json.loads((tmp_path / "toy" / "table.json").read_text())
    (tmp_path / "toy" / "a.flags").write_text("--alpha=1\n")
    (tmp_path / "toy" / "table.json").write_text(json.dumps(dict(spec, metrc="x")))
    with pytest.raises(ConfigError, match="unknown keys"):
        harness.load_table(table)
    (tmp_path / "toy" / "table.json").write_text(json.dumps(dict(spec, paper={"a": {"c10-r32": "1"}})))
    with pytest.raises(ConfigError, match="c10-r32"):
        harness.load_table(table)
    (tmp_path / "toy" / "a.flags").write_text("--model_path={outputdir}\n")
    (tmp_path / "toy" / "table.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="outputdir"):
        harness.reproduce([table], dry_run=True, out=io.StringIO())


def _paper_tables():
    return {
        os.path.basename(os.path.dirname(path)): harness.load_table(os.path.dirname(path))
        for path in sorted(glob.glob(f"{PAPER}/*/table.json"))
    }


def test_paper_tables_are_valid():
    tables = _paper_tables()
    assert set(tables) == {"cifar", "stl10", "voc2007", "teachers", "video", "video_finetune"}
    methods = ["scratch", "kd", "dml", "maxl", "sskt_i", "sskt_p", "sskt_pi"]
    assert [row.name for row in tables["cifar"].rows] == [row.name for row in tables["stl10"].rows] == methods
    assert [row.name for row in tables["voc2007"].rows] == ["scratch", "sskt_i", "sskt_p", "sskt_pi"]
    assert [c.slug for c in tables["cifar"].columns] == [
        "cifar10-resnet20",
        "cifar10-resnet32",
        "cifar100-resnet20",
        "cifar100-resnet32",
    ]
    assert tables["voc2007"].metric == "best_val_mAP"
    assert tables["cifar"].paper["sskt_pi"]["cifar10-resnet20"] == "92.46±0.15"
    # The video tables follow the official README's rows: scratch, DML, SSKT; from scratch and fine-tuned.
    assert [row.name for row in tables["video"].rows] == ["scratch", "dml", "sskt_pi"]
    assert [row.name for row in tables["video_finetune"].rows] == ["scratch", "dml", "sskt_p"]
    assert tables["video"].paper["sskt_pi"]["ucf101-resnet3d18"] == "52.19"
    assert tables["video_finetune"].paper["sskt_p"]["hmdb51-resnet3d18"] == "57.82"
    finetune_cells = harness.plan([tables["video_finetune"]], output_dir="out")
    assert all(train_config(cell.command[2:]).train_from == "layer4" for cell in finetune_cells)
    for table in tables.values():
        assert "reconstructed layout" in table.title or table.name in ("teachers", "video", "video_finetune")
        for row in table.rows:
            with open(row.flagfile) as f:
                assert f.read().startswith("# "), row.flagfile  # a comment explains the row
    # Every kd cell's --teacher is the best.keras of a cell the teachers table trains first.
    cells = harness.plan([tables["cifar"], tables["stl10"]], rows=["kd"], output_dir="out")
    position = {cell.model_dir: index for index, cell in enumerate(cells)}
    kd_cells = [cell for cell in cells if cell.row.name == "kd"]
    assert len(kd_cells) == 5 * 3 and len(cells) == len(kd_cells) + 3
    for cell in kd_cells:
        (teacher,) = [arg.split("=", 1)[1] for arg in cell.command if arg.startswith("--teacher=")]
        assert teacher.endswith("/best.keras") and position[os.path.dirname(teacher)] < position[cell.model_dir]


def test_paper_flagfiles_parse_as_train_flags():
    # Needs tools/train.py's --method, --teacher and --maxl_* flags.
    image_reference = train_config([f"--flagfile={REPO}/configs/cifar10.flags"])
    video_reference = train_config([f"--flagfile={REPO}/configs/ucf101.flags"])
    for table in _paper_tables().values():
        reference = video_reference if table.name.startswith("video") else image_reference
        for row in table.rows:
            for column in table.columns:
                cell = harness.make_cell(table, row, column, 0, "out", train_command=("python", "train.py"))
                config = train_config(cell.command[2:])
                assert (config.dataset, config.target, config.model_dir) == (
                    column.dataset,
                    column.target,
                    cell.model_dir,
                )
                for name in (
                    "epochs",
                    "batch_size",
                    "lr",
                    "lr_schedule",
                    "lr_milestones",
                    "lr_decay",
                    "momentum",
                    "weight_decay",
                ):
                    assert getattr(config, name) == getattr(reference, name), (row.flagfile, name)
                if row.name.startswith("sskt_"):
                    for name in ("head", "aux_loss", "alpha", "temperature", "source_weights", "places365_weights"):
                        assert getattr(config, name) == getattr(reference, name), (row.flagfile, name)
                else:
                    assert config.sources == [], row.flagfile


# Stands in for both tools: with --views it writes the cache's manifest.json, else a results.json.
FAKE_TOOLS = """
import json, os, sys
args = dict(arg[2:].split("=", 1) for arg in sys.argv[1:] if "=" in arg)
if "views" in args:
    os.makedirs(args["soft_label_cache"], exist_ok=True)
    with open(os.path.join(args["soft_label_cache"], "manifest.json"), "w") as f:
        json.dump({"views": int(args["views"]), "seed": int(args["seed"])}, f)
    sys.exit(0)
assert os.path.exists(os.path.join(args["soft_label_cache"], "manifest.json")), "cache missing"
with open(os.path.join(args["model_dir"], "results.json"), "w") as f:
    json.dump({"best_val_accuracy": 0.5 + int(args["seed"]) / 100, "val_accuracy": 0.4, "train_seconds": 120}, f)
"""


def test_cache_rows_build_their_cache_once_before_their_runs_and_extra_metrics_are_shown(tmp_path):
    table = tmp_path / "toy"
    table.mkdir()
    for row in ("a", "b"):
        (table / f"{row}.flags").write_text("--soft_label_cache={output_dir}/cache/{dataset_slug}\n")
    (table / "table.json").write_text(
        json.dumps(
            {
                "title": "Toy",
                "metric": "best_val_accuracy",
                "scale": 100,
                "seeds": [0, 1],
                "rows": [{"name": "a", "label": "A", "cache_views": 7}, {"name": "b", "label": "B", "cache_views": 7}],
                "columns": [{"dataset": "c10", "target": "r20", "label": "C10"}],
                "extra_metrics": [
                    {"metric": "val_accuracy", "label": "last", "scale": 100, "digits": 1},
                    {"metric": "train_seconds", "label": "minutes", "scale": 1 / 60, "digits": 1},
                ],
            }
        )
    )
    script = tmp_path / "fake_tools.py"
    script.write_text(FAKE_TOOLS)
    output_dir = str(tmp_path / "runs")
    cells = harness.plan([harness.load_table(str(table))], output_dir=output_dir)
    assert [(cell.kind, cell.row.name) for cell in cells] == [
        ("cache", "a"),
        ("train", "a"),
        ("train", "a"),
        ("train", "b"),
        ("train", "b"),
    ]
    assert cells[0].model_dir == f"{output_dir}/cache/c10" and cells[0].command[-2:] == ("--seed=0", "--views=7")
    out = io.StringIO()
    assert (
        harness.reproduce([str(table)], output_dir=output_dir, train_command=(sys.executable, str(script)), out=out)
        == []
    )
    text = out.getvalue()
    assert "[1/5] toy/a c10-r20 soft-label cache ... done in" in text and "cache.log" in os.listdir(cells[0].model_dir)
    assert "| Method | C10 | last | minutes |" in text
    assert "| A | 50.50 ± 0.71 | 40.0 ± 0.0 | 2.0 ± 0.0 |" in text
    (table / "table.json").write_text(
        (table / "table.json")
        .read_text()
        .replace('"cache_views": 7}, {"name": "b"', '"cache_views": -1}, {"name": "b"')
    )
    with pytest.raises(ConfigError, match="cache_views must be a positive number"):
        harness.load_table(str(table))


def test_a_merge_row_builds_the_caches_it_joins_then_joins_them(tmp_path):
    table = tmp_path / "toy"
    table.mkdir()
    for row in ("one", "two", "both", "plain"):
        (table / f"{row}.flags").write_text(f"--soft_label_cache={{output_dir}}/cache/{row}\n")
    rows = [
        {"name": "one", "label": "One", "cache_views": 3},
        {"name": "two", "label": "Two", "cache_views": 3},
        {"name": "both", "label": "Both", "cache_merge": ["one", "two"]},
        {"name": "plain", "label": "Plain"},
    ]
    spec = {"title": "Toy", "metric": "best_val_accuracy", "seeds": [0], "rows": rows}
    spec["columns"] = [{"dataset": "c10", "target": "r20", "label": "C10"}]
    (table / "table.json").write_text(json.dumps(spec))
    cells = harness.plan([harness.load_table(str(table))], rows=["one", "both"], output_dir="out")
    assert [(cell.kind, cell.row.name) for cell in cells] == [
        ("cache", "one"),
        ("train", "one"),
        ("cache", "two"),  # built for the merge, though its row is not run
        ("cache", "both"),
        ("train", "both"),
    ]
    assert cells[3].command[-2:] == ("--merge=out/cache/one,out/cache/two", "--soft_label_cache=out/cache/both")
    for broken, message in [
        (["one"], "two or more rows"),
        (["one", "plain"], "names 'plain', which is not a row with cache_views"),
        (["one", "missing"], "names 'missing'"),
    ]:
        rows[2]["cache_merge"] = broken
        (table / "table.json").write_text(json.dumps(spec))
        with pytest.raises(ConfigError, match=message):
            harness.load_table(str(table))


STUDY = os.path.join(REPO, "configs", "study")


def test_cifar10_study_tables_share_one_subset_and_schedule_and_chain_source_cache_and_teacher():
    table = harness.load_table(f"{STUDY}/cifar10")
    cells = harness.plan([table], seeds=[0], output_dir="out")
    kinds = [(cell.table.name, cell.row.name, cell.kind) for cell in cells]
    assert kinds[0] == ("cifar10_source", "source", "train") and ("cifar10_teachers", "scratch", "train") in kinds
    source_model = "out/cifar10_source/source/cifar10_0to4-resnet20/seed0/best.keras"
    random_model = "out/cifar10_source/random/cifar10_0to4-resnet20/seed0/best.keras"
    # The source-choice rows: SSKT with other candidate sources of the cifar10_source table.
    candidate_models = {
        f"sskt_{name}_source": f"out/cifar10_source/{name}/cifar10_0to4-resnet20/seed0/best.keras"
        for name in ("random", "one_epoch", "two_classes")
    }
    position = {cell.model_dir: index for index, cell in enumerate(cells)}
    source_config = train_config(cells[0].command[2:])
    assert source_config.classes == ["airplane", "automobile", "bird", "cat", "deer"]
    assert source_config.train_examples_per_class is None
    targets = [cell for cell in cells if cell.table.name != "cifar10_source" and cell.kind == "train"]
    assert train_config(cells[1].command[2:]).lr == 1e-12  # the random control: one step that changes nothing
    reference = train_config(targets[0].command[2:])
    # The fine-tuned ImageNet network has a fine-tuning schedule of its own; the data is everyone's.
    schedule = ("epochs", "batch_size", "lr", "lr_milestones", "lr_decay", "weight_decay", "validation_freq")
    for cell in targets:
        config = train_config(cell.command[2:])
        finetune = cell.table.name == "cifar10_finetune"
        for name in ("classes", "train_examples_per_class", "subset_seed", "dataset", *(() if finetune else schedule)):
            assert getattr(config, name) == getattr(reference, name), (cell.description, name)
        if finetune:
            assert (config.target, config.epochs, config.lr, config.lr_milestones) == (
                "efficientnet_lite0",
                30,
                0.01,
                [15, 25],
            )
        ranking_row = re.fullmatch(r"sskt_(lite[12]|cifar_source)_rest", cell.row.name)
        if ranking_row:
            # The source-ranking rows: sskt_lite0_rest's setting with another source.
            other = ranking_row[1]
            expected = source_model if other == "cifar_source" else f"imagenet/efficientnet_{other}"
            assert config.sources == [expected] and (config.alpha, config.temperature) == (1.0, 2.0)
            assert config.unlabeled_from_rest and config.unlabeled_ratio == 1.0 and config.head == "linear"
            suffix = "cifar_source" if other == "cifar_source" else f"{other}_128"
            assert config.soft_label_cache == f"out/cache/cifar10_5to9_500_rest_{suffix}", cell.description
        elif cell.row.name.startswith("sskt_lite0"):
            # The ImageNet rows: Lite0 from its pip package; the alpha/T grid in the row's name.
            grid = re.fullmatch(r"sskt_lite0_a(\d+)_t(\d)", cell.row.name)
            rest = "_rest" in cell.row.name
            alpha, temperature = (float(f"{grid[1][0]}.{grid[1][1:]}"), float(grid[2])) if grid else (0.1, 3.0)
            paper = cell.row.name.endswith("_paper")  # the unlabelled setting at the labelled rows' values
            if rest and not paper:  # the unlabelled rows: the probe's alpha and T, the alpha=0 control
                alpha, temperature = (0.0 if cell.row.name.endswith("alpha0") else 1.0), 2.0
            size = 96 if cell.row.name == "sskt_lite0_96" else 128
            two = "_lite2" in cell.row.name  # Lite0 and Lite2 together, as the paper's P+I
            lite = ["imagenet/efficientnet_lite0", *(["imagenet/efficientnet_lite2"] if two else [])]
            assert config.sources == lite and config.source_image_size == size
            assert (config.alpha, config.temperature) == (alpha, temperature), cell.description
            assert (config.unlabeled_from_rest, config.unlabeled_ratio) == (rest, 1.0)
            assert config.head == ("transfer" if not rest or paper or cell.row.name.endswith("_transfer") else "linear")
            random = "_random" in cell.row.name  # the random-weights control (its unseeded and seeded draws)
            assert config.source_weights == ("none" if random else "imagenet")
            cache = f"out/cache/cifar10_5to9_500_{'rest_' if rest else ''}lite0_{'lite2_' if two else ''}{size}"
            cache += {
                "sskt_lite0_rest_shuffled": "_shuffled",
                "sskt_lite0_rest_random": "_random_spread",
                "sskt_lite0_rest_random_seeded": "_random_spread_seed0",
            }.get(cell.row.name, "")
            assert config.soft_label_cache == cache, cell.description
        elif config.method == "sskt":
            expected = candidate_models.get(cell.row.name, source_model)
            alpha = 0.0 if cell.row.name == "sskt_alpha0" else 0.1  # the control without the auxiliary loss
            assert config.sources == [expected] and (config.alpha, config.temperature) == (alpha, 3.0)
            assert position[os.path.dirname(expected)] < position[cell.model_dir]
        if config.soft_label_cache:
            cache = position[config.soft_label_cache]
            assert cells[cache].kind == "cache" and cache < position[cell.model_dir]
        if config.method == "kd":
            assert position[os.path.dirname(config.teacher)] < position[cell.model_dir]
        # The warmup variants differ from their rows by the warmup alone (the KD one's teacher too).
        assert config.lr_warmup_epochs == (5 if "_warmup" in cell.row.name else 0), cell.description
        if cell.row.name.startswith("kd_") and cell.row.name.endswith("_rest"):
            assert config.unlabeled_from_rest and config.unlabeled_ratio == 1.0
        if "_lite0ft" in cell.row.name:  # KD from the fine-tuned ImageNet network
            assert "/cifar10_finetune/lite0/cifar10_5to9_500-efficientnet_lite0/seed0/" in config.teacher
        elif cell.row.name.startswith("kd_warmup"):
            assert "/cifar10_teachers/scratch_warmup/" in config.teacher
    cache_cells = [cell for cell in cells if cell.kind == "cache"]
    assert len(cache_cells) == 15
    assert [train_config(cell.command[2:-1]).sources for cell in cache_cells[:4]] == [
        [source_model],
        [random_model],
        [candidate_models["sskt_one_epoch_source"]],
        [candidate_models["sskt_two_classes_source"]],
    ]
    by_name = {cell.model_dir.rsplit("/", 1)[1]: cell for cell in cache_cells}
    # Lite0 + Lite2 with the unlabelled images: joined from the Lite0 and Lite2 caches, after both.
    merged = by_name.pop("cifar10_5to9_500_rest_lite0_lite2_128")
    parts = ("out/cache/cifar10_5to9_500_rest_lite0_128", "out/cache/cifar10_5to9_500_rest_lite2_128")
    assert merged.command[-2:] == (f"--merge={','.join(parts)}", f"--soft_label_cache={merged.model_dir}")
    assert all(position[merged.model_dir] > position[part] for part in parts)
    lite0 = {name: cell.command[2:] for name, cell in by_name.items() if "_lite0_" in name}
    assert len(lite0) == 7  # 128 and 96; with the unlabelled images; the controls (two random draws); Lite0 + Lite2
    assert {flags[-1] for flags in lite0.values()} == {"--views=100", "--views=20"}
    others = {name: cell for name, cell in by_name.items() if "_rest_" in name and "_lite0_" not in name}
    assert {name: train_config(cell.command[2:-1]).sources for name, cell in others.items()} == {
        "cifar10_5to9_500_rest_lite1_128": ["imagenet/efficientnet_lite1"],
        "cifar10_5to9_500_rest_lite2_128": ["imagenet/efficientnet_lite2"],
        "cifar10_5to9_500_rest_cifar_source": [source_model],
    }
    # The controls' caches: the trained Lite0's soft labels shuffled; a random Lite0 at the trained one's spread.
    assert lite0["cifar10_5to9_500_rest_lite0_128_shuffled"][-2] == "--soft_label_control=shuffle"
    for random in (
        "cifar10_5to9_500_rest_lite0_128_random_spread",
        "cifar10_5to9_500_rest_lite0_128_random_spread_seed0",
    ):
        assert lite0[random][-2] == "--soft_label_control=spread:2.74"
        assert train_config(lite0[random][:-2]).source_weights == "none"


def test_nested_flagfiles_are_followed_as_absl_follows_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nested paths are relative to the working directory, as in absl
    table = tmp_path / "toy"
    table.mkdir()
    (table / "common.flags").write_text("# shared\n--epochs=7\n--model_path={output_dir}/{dataset_slug}/shared\n")
    (table / "a.flags").write_text("--flagfile=toy/common.flags\n--alpha=0.5\n")
    (table / "table.json").write_text(
        json.dumps(
            {
                "title": "Toy",
                "metric": "best_val_accuracy",
                "seeds": [0],
                "rows": [{"name": "a", "label": "A"}],
                "columns": [{"dataset": "c10", "target": "r20", "label": "c10"}],
            }
        )
    )
    assert harness.read_flagfile("toy/a.flags") == [
        "--epochs=7",
        "--model_path={output_dir}/{dataset_slug}/shared",
        "--alpha=0.5",
    ]
    (cell,) = harness.plan([harness.load_table(str(table))], output_dir="out")
    # The nested file's placeholder line reaches the command expanded, like the row's own lines.
    assert "--model_path=out/c10/shared" in cell.command
    (table / "a.flags").write_text("--flagfile=toy/missing.flags\n")
    with pytest.raises(ConfigError, match="toy/missing.flags does not exist \\(included by toy/a.flags"):
        harness.read_flagfile("toy/a.flags")
    (table / "a.flags").write_text("--flagfile=toy/a.flags\n")
    with pytest.raises(ConfigError, match="includes itself"):
        harness.read_flagfile("toy/a.flags")


def test_the_harness_reads_every_config_flagfile_as_training_does(monkeypatch):
    monkeypatch.chdir(REPO)  # the row flagfiles include their common.flags relative to the repository root
    paths = sorted(glob.glob(os.path.join("configs", "*", "*", "*.flags")))
    nested = [path for path in paths if any(line.startswith("--flagfile=") for line in open(path))]
    assert len(nested) >= 20
    for path in nested:
        assert train_config([f"--flagfile={path}"]) == train_config(harness.read_flagfile(path)), path
