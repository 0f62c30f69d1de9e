"""Reruns the paper's comparison tables: python tools/reproduce.py --table=configs/paper/cifar

    python tools/reproduce.py --table=configs/paper/cifar --dry_run          # list the commands
    python tools/reproduce.py --table=configs/paper/cifar --rows=sskt_pi --seeds=0
    python tools/reproduce.py --table=configs/paper/cifar,configs/paper/stl10 \
        --extra_flags="--epochs=1 --steps_per_epoch=2" --output_dir=runs/smoke   # plumbing check
    python tools/reproduce.py --table=configs/paper/cifar --collect_only      # tables from finished runs
    python tools/reproduce.py --table=configs/study/cifar10 --output_dir=results/cifar10_study --collect_only --plot

Each cell (row x column x seed) is one tools/train.py run in
<output_dir>/<table>/<row>/<column>/seed<S>/ (its output in train.log there); cells with
results.json are skipped, so rerunning the same command resumes an interrupted grid.
The results go to <output_dir>/<table>/results.md (the table) and results.json (every
run's metric); with --plot, curves.png (learning curves, mean ± std over seeds) beside them.
Exit status: 0, 1 if any cell failed (listed at the end), 2 for bad flags
or tables. See tools/studies/harness.py for the table.json format.
"""

import os
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from studies import harness  # noqa: E402

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool  # noqa: E402

flags.DEFINE_list(
    "table", None, "Comma list of table directories (configs/paper/<table>) or names under configs/paper."
)
flags.DEFINE_list("seeds", [], "Seeds overriding the tables' own (empty = table.json's seeds).")
flags.DEFINE_list("rows", [], "Rows to run, by flagfile stem (empty = all); results tables show every row.")
flags.DEFINE_list("columns", [], "Columns to run, by slug such as cifar10-resnet20 (empty = all).")
flags.DEFINE_string("output_dir", "runs/paper", "Base directory of the runs and results tables.")
flags.DEFINE_string(
    "extra_flags", "", 'Flags appended to every cell\'s command, e.g. "--epochs=1 --steps_per_epoch=2".'
)
flags.DEFINE_bool("dry_run", False, "Print the commands only.")
flags.DEFINE_bool("collect_only", False, "Train nothing: build the results tables from the finished runs.")
flags.DEFINE_bool(
    "plot",
    False,
    "Also draw each results table's learning curves (curves.png beside results.md; "
    'needs matplotlib: pip install -e ".[plot]").',
)
flags.mark_flag_as_required("table")


def _reproduce(values):
    """Runs the grid the flags ask for; returns the failed cells."""
    try:
        seeds = [int(seed) for seed in values.seeds]
    except ValueError:
        raise flags.ValidationError(f"--seeds takes a comma list of integers, got {','.join(values.seeds)}.") from None
    return harness.reproduce(
        values.table,
        seeds=seeds,
        rows=values.rows,
        columns=values.columns,
        output_dir=values.output_dir,
        extra_flags=values.extra_flags,
        dry_run=values.dry_run,
        collect_only=values.collect_only,
        plot=values.plot,
    )


def main(argv):
    failed = run_tool(argv, lambda: _reproduce(flags.FLAGS))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
