"""Learning curves of training runs, averaged over seeds: python tools/plot_runs.py

    python tools/plot_runs.py --output=curves.png \
        --runs="Scratch=results/cifar10_study/cifar10/scratch/*/seed*" \
        --runs="SSKT=results/cifar10_study/cifar10/sskt/*/seed*"

Each --runs is LABEL=GLOB (or just GLOB, which is then its own label): the run
directories (--model_dir of tools/train.py) whose history.csv form one line, drawn as
the mean over the runs with a ± std band. Panels: training loss, validation accuracy
(val_mAP for multi-label runs) and learning rate. Needs matplotlib:
pip install -e ".[plot]". For a tools/reproduce.py table, --plot draws the same figure.
"""

import os

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from studies import learning_curves  # noqa: E402

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool  # noqa: E402

flags.DEFINE_multi_string("runs", None, "LABEL=GLOB of run directories forming one line (repeat for more lines).")
flags.DEFINE_string("output", "curves.png", "Image to write (.png, .svg or .pdf).")
flags.DEFINE_string("title", "", "Figure title.")
flags.DEFINE_bool("finished_only", False, "Leave out runs without results.json (still training, or interrupted).")
flags.mark_flag_as_required("runs")


def main(argv):
    values = flags.FLAGS

    def plot():
        groups = learning_curves.groups_from_patterns(values.runs, values.finished_only)
        learning_curves.plot_groups(groups, values.output, title=values.title or None)
        counts = (f"{label} ({len(runs)} {'run' if len(runs) == 1 else 'runs'})" for label, runs in groups.items())
        print(f"{values.output}: {', '.join(counts)}")

    run_tool(argv, plot)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
