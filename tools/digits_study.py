"""The CPU transfer study on scikit-learn's digits: python tools/digits_study.py

Writes the study's image folders (digits 0-4 for the source network, digits 5-9 with a
few labels a class for the target) under runs/digits_study/data/, trains the source
network (configs/study/digits_source), then runs the study table (configs/study/digits:
scratch, KD, DML, MAXL and SSKT over several seeds, KD's teacher first) through
tools/reproduce.py's harness. The table is written to
runs/digits_study/digits/results.md. Rerunning skips finished runs.
"""

import os
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from studies import digits as digits_study  # noqa: E402
from studies import harness  # noqa: E402

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool  # noqa: E402

flags.DEFINE_list("seeds", [], "Seeds of the study table (empty = its table.json's: 0-4).")
flags.DEFINE_list("rows", [], "Rows to run (scratch, kd, dml, maxl, sskt; empty = all).")
flags.DEFINE_integer("labelled_per_class", 10, "Labelled target training images per class.")
flags.DEFINE_bool("dry_run", False, "Write the data, then print the training commands only.")

_OUTPUT_DIR = os.path.join("runs", "digits_study")  # the tables' dataset paths point under it
_TABLES = os.path.join(REPO, "configs", "study")


def _study(values):
    counts = digits_study.write_datasets(labelled_per_class=values.labelled_per_class)
    print(
        f"Data in {digits_study.DATA_DIR}: source (digits 0-4) {counts['source'][0]} train / "
        f"{counts['source'][1]} val, target (digits 5-9) {counts['target'][0]} train / {counts['target'][1]} val."
    )
    seeds = [int(seed) for seed in values.seeds]
    failed = harness.reproduce([os.path.join(_TABLES, "digits_source")], output_dir=_OUTPUT_DIR, dry_run=values.dry_run)
    if failed:
        return failed
    return harness.reproduce(
        [os.path.join(_TABLES, "digits")], seeds=seeds, rows=values.rows, output_dir=_OUTPUT_DIR, dry_run=values.dry_run
    )


def main(argv):
    failed = run_tool(argv, lambda: _study(flags.FLAGS))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
