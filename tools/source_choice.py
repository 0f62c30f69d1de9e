"""Transferability scores of candidate sources against the gains SSKT measured with them.

    python tools/source_choice.py --spec=configs/study/cifar10/source_choice.json \
        --output_dir=results/cifar10_study

Scores every candidate of the spec on the target's training images (tools/rank_sources.py),
reads the finished runs of the rows that trained SSKT with each candidate and of the
baseline row, and writes ``<spec name>.md``, ``.json`` and ``.png`` (score against gain, with Spearman's
rank correlation) beside the table's results. See tools/studies/source_choice.py.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402
from studies import source_choice  # noqa: E402

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool  # noqa: E402
from sskt_tf.errors import ConfigError  # noqa: E402

flags.DEFINE_string("spec", "configs/study/cifar10/source_choice.json", "The candidates and rows to compare.")
flags.DEFINE_string("output_dir", "results/cifar10_study", "The harness's --output_dir (its runs and sources).")
flags.DEFINE_integer("rank_examples", 0, "Score on the first N training images; 0 = all.", lower_bound=0)
flags.DEFINE_bool(
    "reuse_scores",
    False,
    "Take the candidates' scores from the last run's <spec name>.json instead of scoring again, and "
    "refresh only the gains (as seeds finish, or where a candidate's soft-label cache is gone).",
)


def main(argv):
    logging.set_verbosity(logging.WARNING)
    values = flags.FLAGS

    def run():
        with open(values.spec) as f:
            table = json.load(f)["table"]
        # Named after the spec: source_choice.json writes source_choice.md, .json and .png.
        base = os.path.join(values.output_dir, table, os.path.splitext(os.path.basename(values.spec))[0])
        previous = None
        if values.reuse_scores:
            if not os.path.exists(f"{base}.json"):
                raise ConfigError(f"--reuse_scores: no earlier result {base}.json; run once without it.")
            with open(f"{base}.json") as f:
                previous = json.load(f)
        result = source_choice.source_choice(values.spec, values.output_dir, values.rank_examples, previous)
        markdown = source_choice.format_markdown(result)
        with open(f"{base}.md", "w") as f:
            f.write(markdown + "\n")
        with open(f"{base}.json", "w") as f:
            json.dump(result, f, indent=1)
        source_choice.plot(result, f"{base}.png")
        print(markdown)
        print(f"\n(written to {base}.md, .json and .png)")

    run_tool(argv, run)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
