"""Merging soft-label caches: one cache per source combined into a cache of all of them.

A run with several sources (the paper's P+I) needs a cache that holds every source's
logits. When each source already has a cache of the same training set, views and
settings, :func:`merge` joins them record by record instead of running the sources
again: view ``v`` of every cache was drawn from the same ``(seed, index, view)``, so
the records hold the same augmented image and only the logits differ.
"""

import logging
import os
import time

import tensorflow as tf

from sskt_tf.errors import ConfigError
from sskt_tf.soft_labels.reader import SoftLabelCache
from sskt_tf.soft_labels.settings import MANIFEST, open_for_writing, write_json

# Settings that differ between the caches being merged: the merged cache concatenates them.
_PER_SOURCE_SETTINGS = ("sources", "file_sha256")


def _check_compatible(caches):
    """Raises a ConfigError listing why ``caches`` cannot be merged."""
    if len(caches) < 2:
        raise ConfigError("--merge needs at least two soft-label caches, separated by commas.")
    first = caches[0]
    problems = []
    for cache in caches:
        if cache.settings.get("control"):
            problems.append(
                f"{cache.directory} holds a control ({cache.settings['control']}), which applies to all of a "
                "cache's sources at once; build the control's cache with every source instead"
            )
    for cache in caches[1:]:
        for name in sorted(set(first.settings) | set(cache.settings)):
            if name in _PER_SOURCE_SETTINGS:
                continue
            if first.settings.get(name) != cache.settings.get(name):
                problems.append(
                    f"{name}: {first.directory} has {first.settings.get(name)!r}, "
                    f"{cache.directory} has {cache.settings.get(name)!r}"
                )
        layout = [[shard["examples"] for shard in shards] for shards in cache.manifest["shards"]]
        if layout != [[shard["examples"] for shard in shards] for shards in first.manifest["shards"]]:
            problems.append(f"{cache.directory} splits its views into other shards than {first.directory}")
    names = [name for cache in caches for name, _ in cache.source_classes]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"source name(s) {', '.join(repeated)} in more than one cache (each source needs its own head)")
    if problems:
        raise ConfigError("These soft-label caches cannot be merged: " + "; ".join(problems) + ".")


def _renumbered(example, offset):
    """The per-source features of a cache's ``tf.train.Example``, their source number shifted by ``offset``."""
    features = {}
    for key, feature in example.features.feature.items():
        if key in ("index", "fingerprint"):
            continue
        prefix, _, number = key.rpartition("_")
        features[f"{prefix}_{int(number) + offset}"] = feature
    return features


def _identity(example):
    """``(index, fingerprint)`` of a cache record's ``tf.train.Example``."""
    feature = example.features.feature
    return feature["index"].int64_list.value[0], feature["fingerprint"].int64_list.value[0]


def _merge_shard(paths, output_path, offsets):
    """Writes one shard whose records join the records of ``paths`` (checked to be the same examples)."""
    readers = [tf.data.TFRecordDataset(path).as_numpy_iterator() for path in paths]
    count = 0
    with tf.io.TFRecordWriter(output_path + ".partial") as writer:
        for records in zip(*readers, strict=True):
            examples = [tf.train.Example.FromString(record) for record in records]
            first, identity = examples[0].features.feature, _identity(examples[0])
            merged = tf.train.Example()
            merged.features.feature["index"].CopyFrom(first["index"])
            merged.features.feature["fingerprint"].CopyFrom(first["fingerprint"])
            for example, offset in zip(examples, offsets):
                if _identity(example) != identity:
                    raise ConfigError(
                        f"Record {count} of {output_path} differs between the caches (index, fingerprint "
                        f"{identity} against {_identity(example)}): they were made from other data."
                    )
                for key, value in _renumbered(example, offset).items():
                    merged.features.feature[key].CopyFrom(value)
            writer.write(merged.SerializeToString())
            count += 1
    os.replace(output_path + ".partial", output_path)
    return dict(file=os.path.basename(output_path), examples=count, bytes=os.path.getsize(output_path))


def merge(directories, directory, overwrite=False):
    """Writes into ``directory`` one cache holding the sources of every cache in ``directories``.

    The caches must be complete and made from the same data and views (every
    setting equal but the sources, no control); the merged cache lists their
    sources in the order of ``directories`` and serves a run whose ``--sources``
    names them in that order.

    Args:
        directories: two or more cache directories.
        directory: where to write the merged cache.
        overwrite: replace a complete cache in ``directory``.

    Returns:
        The merged cache's manifest dict (also written to ``<directory>/manifest.json``).

    Raises:
        ConfigError: a cache is missing or unfinished, or the caches differ in
            anything but their sources (listing every difference), or
            ``directory`` already holds a cache.
    """
    caches = [SoftLabelCache(os.path.expanduser(path)) for path in directories]
    _check_compatible(caches)
    directory = os.path.expanduser(directory)
    if any(os.path.abspath(directory) == os.path.abspath(cache.directory) for cache in caches):
        raise ConfigError(f"--soft_label_cache={directory} is one of the caches to merge; write the merge elsewhere.")
    open_for_writing(directory, overwrite)

    start = time.time()
    offsets = [0]
    for cache in caches[:-1]:
        offsets.append(offsets[-1] + len(cache.source_classes))
    shards = []
    for view, view_shards in enumerate(caches[0].manifest["shards"]):
        shards.append(
            [
                _merge_shard(
                    [os.path.join(cache.directory, cache.manifest["shards"][view][s]["file"]) for cache in caches],
                    os.path.join(directory, shard["file"]),
                    offsets,
                )
                for s, shard in enumerate(view_shards)
            ]
        )
        logging.info("View %d/%d of the merged soft-label cache written.", view + 1, len(caches[0].manifest["shards"]))

    settings = dict(caches[0].settings)
    settings["sources"] = [spec for cache in caches for spec in cache.settings["sources"]]
    settings["file_sha256"] = {}
    for cache in caches:
        settings["file_sha256"].update(cache.settings["file_sha256"])
    precisions = sorted({cache.manifest.get("mixed_precision", "") for cache in caches})
    manifest = dict(
        settings=settings,
        sources=[source for cache in caches for source in cache.manifest["sources"]],
        shards=shards,
        mixed_precision="+".join(precisions),
        seconds=round(time.time() - start, 1),
        merged_from=[dict(directory=cache.directory, seconds=cache.manifest.get("seconds")) for cache in caches],
    )
    write_json(os.path.join(directory, MANIFEST), manifest)
    return manifest
