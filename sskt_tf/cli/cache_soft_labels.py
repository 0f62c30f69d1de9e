"""Runs the sources once over K augmented views of the training set and caches their logits.

    python tools/cache_soft_labels.py --flagfile=configs/cifar10.flags \
        --soft_label_cache=caches/cifar10-pi --views=10
    python tools/train.py --flagfile=configs/cifar10.flags --soft_label_cache=caches/cifar10-pi

Takes every flag of tools/train.py (the dataset, sources and weights flags say what to
cache; --seed draws the views; --mixed_precision and --jit_compile speed the sources up)
plus the flags below. Epoch e of a run with --soft_label_cache trains on view e mod K, so
the sources never run during training. An interrupted run resumes when rerun.

    python tools/cache_soft_labels.py --merge=caches/lite0,caches/lite2 --soft_label_cache=caches/lite0_lite2

joins caches of single sources, made from the same data and views, into the cache of a
run with all of them (--sources=<the first's>,<the second's>), without running a source.
"""

import json

from absl import app, flags, logging

from sskt_tf import soft_labels, training
from sskt_tf.cli.tool import parse_flags_or_exit, run_tool
from sskt_tf.errors import ConfigError
from sskt_tf.training.flags import config_from_command_line, define_flags

define_flags()
flags.DEFINE_integer("views", 10, "Augmented views K per training image (1 with --noaugment).", lower_bound=1)
flags.DEFINE_integer(
    "top_k",
    0,
    "Keep only each source's top_k largest logits (smaller cache; the soft labels are "
    "renormalised over them); 0 = all logits.",
    lower_bound=0,
)
flags.DEFINE_enum("cache_dtype", "float16", list(soft_labels.DTYPES), "Storage type of the logits.")
flags.DEFINE_integer("cache_batch_size", 256, "Images per source call.", lower_bound=1)
flags.DEFINE_integer("examples_per_shard", 10_000, "Records per TFRecord file.", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Replace a complete cache, or an unfinished one with other settings.")
flags.DEFINE_string(
    "soft_label_control",
    "",
    "Studies' controls, stored instead of the sources' logits: shuffle (each batch's soft labels permuted "
    "across its images: same label distribution, no per-image knowledge) or spread:S (every logit vector "
    "centred and scaled to standard deviation S, e.g. a random network's given a trained one's spread).",
)
flags.DEFINE_list(
    "merge",
    [],
    "Instead of running the sources: join these caches (two or more, made from the same data, views and "
    "settings, one source set each) into the cache --soft_label_cache names, for a run whose --sources lists "
    "their sources in this order. The other flags are not used.",
)


def _build_or_merge(values):
    if values.merge:
        if not values.soft_label_cache:
            raise ConfigError("--soft_label_cache=DIR names the directory to write the merged cache to.")
        return soft_labels.merge(values.merge, values.soft_label_cache, overwrite=values.overwrite)
    return training.build_soft_label_cache(
        config_from_command_line(values),
        values.views,
        top_k=values.top_k,
        dtype=values.cache_dtype,
        batch_size=values.cache_batch_size,
        examples_per_shard=values.examples_per_shard,
        overwrite=values.overwrite,
        control=values.soft_label_control,
    )


def main(argv):
    logging.set_verbosity(logging.INFO)
    values = flags.FLAGS
    manifest = run_tool(argv, lambda: _build_or_merge(values))
    files = [shard for shards in manifest["shards"] for shard in shards]
    print(
        json.dumps(
            dict(
                soft_label_cache=values.soft_label_cache,
                views=len(manifest["shards"]),
                files=len(files),
                megabytes=round(sum(shard["bytes"] for shard in files) / 2**20, 1),
                seconds=manifest["seconds"],
            ),
            sort_keys=True,
        )
    )


def run():
    """The console script's entry point: parses the flags and runs :func:`main`."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
