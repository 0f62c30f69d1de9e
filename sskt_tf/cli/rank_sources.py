"""Ranks candidate sources for a target before training: python tools/rank_sources.py

    python tools/rank_sources.py --flagfile=configs/study/cifar10/sskt.flags \\
        --dataset=folder:~/data/cifar10 --sources=imagenet/resnet50,places365/resnet18,my_source.keras \\
        --rank_examples=2000 --output=ranking.json

Takes the training flags of a run (dataset, subset flags, ``--sources`` with any number of
candidates and their weights flags), or a ``--soft_label_cache`` built for them; runs each
candidate once over the training images (resized and preprocessed as in training, without
augmentation); and prints one row per candidate, best first: its classes, LEEP, NCE, LogME
(:mod:`sskt_tf.sources.transferability`) and the seconds its forward passes took. Then one
row per pair of candidates, scored as a single source whose output is both outputs: LEEP
over the product of their softmax outputs, NCE over their pairs of top-1 classes, LogME on
their concatenated logits (:mod:`sskt_tf.sources.ranking`). With ``--output``,
everything also goes to a JSON file.
"""

import json

from absl import app, flags, logging

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool
from sskt_tf.errors import ConfigError
from sskt_tf.sources.ranking import SCORES, format_table
from sskt_tf.training.flags import config_from_command_line, define_flags
from sskt_tf.training.run_sources import rank

define_flags()
flags.DEFINE_integer("rank_examples", 0, "Score on the first N training images (of the --seed order); 0 = all.")
flags.DEFINE_integer("rank_batch_size", 256, "Images per source call.", lower_bound=1)
flags.DEFINE_enum("rank_by", "leep", SCORES, "The score the table is sorted by.")
flags.DEFINE_bool("pairs", True, "Also score every pair of candidates used together.")
flags.DEFINE_string("output", "", "Also write the table to this JSON file.")


def main(argv):
    logging.set_verbosity(logging.WARNING)
    values = flags.FLAGS

    def run():
        if values.rank_examples < 0:
            raise ConfigError(f"flag --rank_examples={values.rank_examples}: must be >= 0 (0 = all images).")
        ranking = rank(
            config_from_command_line(values), values.rank_examples, values.rank_batch_size, values.rank_by, values.pairs
        )
        print(format_table(ranking))
        if values.output:
            with open(values.output, "w") as f:
                json.dump(ranking, f, indent=1)

    run_tool(argv, run)


def run():
    """The console script's entry point: parses the flags and runs :func:`main`."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
