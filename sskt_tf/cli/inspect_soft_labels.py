"""What each source's soft labels say about the target's classes: python tools/inspect_soft_labels.py

    python tools/inspect_soft_labels.py --flagfile=configs/study/cifar10/sskt.flags \
        --sources=results/cifar10_study/cifar10_source/source/cifar10_0to4-resnet20/seed0/best.keras \
        --dataset=folder:~/data/cifar10 --output=soft_labels.json

Takes the training flags of a run (dataset, subset flags, --sources and their weights
flags, --temperature; a --soft_label_cache is ignored), runs each source once over the
training images without augmentation, and prints, per source: the soft labels' entropy at
--temperature against the uniform maximum, the mutual information between the target
label and the source's top-1 class, the accuracy of the best source-class -> target-class
mapping against the majority baseline, and which source classes each target class falls
into. A .keras source with a results.json beside it (a tools/train.py run) is shown with
that run's class names. See sskt_tf/soft_labels/stats.py.
"""

import dataclasses
import json
import os

from absl import app, flags, logging

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool
from sskt_tf.soft_labels import stats as soft_label_stats
from sskt_tf.training.flags import config_from_command_line, define_flags
from sskt_tf.training.run_sources import source_outputs

define_flags()
flags.DEFINE_string("output", "", "Also write every statistic (per source) to this JSON file.")
flags.DEFINE_integer("inspect_batch_size", 256, "Images per source call.", lower_bound=1)


def _source_class_names(spec):
    """The class names a tools/train.py run recorded beside a .keras source (None if there are none)."""
    results = os.path.join(os.path.dirname(os.path.expanduser(spec)), "results.json")
    if spec.endswith(".keras") and os.path.exists(results):
        with open(results) as f:
            return json.load(f).get("class_names")
    return None


def inspect(config, batch_size):
    """Per-source statistics (:func:`sskt_tf.soft_labels.stats.soft_label_statistics`) of ``config``'s sources."""
    outputs = source_outputs(dataclasses.replace(config, soft_label_cache=""), batch_size)
    return {
        name: soft_label_stats.soft_label_statistics(
            logits, outputs.labels, config.temperature, _source_class_names(spec), outputs.class_names
        )
        for name, spec, logits in zip(outputs.names, outputs.specs, outputs.logits)
    }


def _print(statistics):
    for name, stats in statistics.items():
        print(f"source {name}: {stats['source_classes']} classes, {stats['examples']} training images")
        print(
            f"  soft labels at T={stats['temperature']:g}: mean entropy {stats['mean_entropy']:.3f} nats of at most "
            f"{stats['max_entropy']:.3f}; mean top probability {stats['mean_max_probability']:.3f}"
        )
        print(
            f"  I(target label; source top-1) = {stats['mutual_information']:.3f} nats of H(label) = "
            f"{stats['label_entropy']:.3f}; best top-1 -> label mapping {100 * stats['mapping_accuracy']:.1f}% "
            f"(majority class {100 * stats['majority_accuracy']:.1f}%)"
        )
        for target, row in stats["per_class"].items():
            soft = ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(row["mean_soft_label"].items(), key=lambda kv: -kv[1])[:3]
            )
            print(
                f"  {target:>12}: top-1 {row['top_source_class']} for {100 * row['top_source_share']:.0f}%; "
                f"mean soft label {soft}"
            )


def main(argv):
    logging.set_verbosity(logging.WARNING)
    values = flags.FLAGS

    def run():
        statistics = inspect(config_from_command_line(values), values.inspect_batch_size)
        _print(statistics)
        if values.output:
            with open(values.output, "w") as f:
                json.dump(statistics, f, indent=1)

    run_tool(argv, run)


def run():
    """The console script's entry point: parses the flags and runs :func:`main`."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
