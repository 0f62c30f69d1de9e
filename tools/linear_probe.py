"""What a frozen source knows about a target: a logistic regression on its pooled features.

    python tools/linear_probe.py --flagfile=configs/study/cifar10/sskt_lite0.flags \
        --dataset=folder:~/data/cifar10 --soft_label_cache= \
        --output=results/cifar10_study/linear_probe/lite0_128.json

Takes the training flags of a run (dataset, subset flags, one source in --sources with its
weights and size flags); extracts the source's pooled features on the labelled training and
the validation images (no augmentation), fits an L2 logistic regression whose strength is
chosen by 5-fold cross-validation on the training images, and prints its validation accuracy:
the reference a transfer study compares its targets with. Needs scikit-learn (the test
extra installs it). See tools/studies/linear_probe.py.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402
from studies.linear_probe import linear_probe  # noqa: E402

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool  # noqa: E402
from sskt_tf.training.flags import config_from_command_line, define_flags  # noqa: E402

define_flags()
flags.DEFINE_string("output", "", "Also write the result to this JSON file.")


def main(argv):
    logging.set_verbosity(logging.WARNING)
    values = flags.FLAGS

    def run():
        result = linear_probe(config_from_command_line(values))
        print(json.dumps(result, indent=1))
        if values.output:
            os.makedirs(os.path.dirname(os.path.abspath(values.output)), exist_ok=True)
            with open(values.output, "w") as f:
                json.dump(result, f, indent=1)

    run_tool(argv, run)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
