"""Writing a soft-label cache: the sources run once over K fixed views of the training set."""

import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from sskt_tf.data import views as views_lib
from sskt_tf.errors import ConfigError
from sskt_tf.soft_labels.settings import (
    DTYPES,
    MANIFEST,
    PROGRESS,
    indexed_examples,
    open_for_writing,
    read_json,
    shard_name,
    training_settings,
    write_json,
)


def _bytes_feature(array):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[np.ascontiguousarray(array).tobytes()]))


def _int_feature(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _serialize(index, fingerprint, logits, top_k, dtype):
    """One record: the example's index and fingerprint and every source's logits."""
    features = {"index": _int_feature(index), "fingerprint": _int_feature(fingerprint)}
    for i, values in enumerate(logits):
        if top_k:
            order = np.argsort(-values, kind="stable")[:top_k]
            features[f"top_k_values_{i}"] = _bytes_feature(values[order].astype(dtype))
            features[f"top_k_indices_{i}"] = _bytes_feature(order.astype(np.int32))
        else:
            features[f"logits_{i}"] = _bytes_feature(values.astype(dtype))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def parse_control(control):
    """``(kind, value)`` of a soft-label control: ``("", None)``, ``("shuffle", None)`` or ``("spread", S)``.

    Raises:
        ConfigError: anything else.
    """
    kind, _, value = (control or "").partition(":")
    if kind in ("", "shuffle") and not value:
        return kind, None
    if kind == "spread":
        try:
            spread = float(value)
        except ValueError:
            spread = -1.0
        if spread > 0:
            return kind, spread
    raise ConfigError(
        f"Unknown --soft_label_control={control}: use shuffle (each batch's soft labels permuted across its images) "
        "or spread:S (every logit vector centred and scaled to standard deviation S)."
    )


def control_logits(logits, control, seed):
    """A study's control applied to one batch's logits (the cache then holds these instead).

    Args:
        logits: list of ``[batch, classes]`` float32 arrays, one per source.
        control: ``(kind, value)`` from :func:`parse_control`.
        seed: a sequence of ints that fixes the batch's permutation.

    Returns:
        The list of arrays: unchanged; permuted across the batch's images, the
        same permutation for every source (``shuffle``: the label distribution
        stays, the pairing of image and soft label goes); or each row centred
        and scaled to standard deviation ``S`` (``spread``: a random network's
        near-constant outputs given a trained network's spread).
    """
    kind, value = control
    if kind == "shuffle":
        order = np.random.default_rng(list(seed)).permutation(len(logits[0]))
        return [values[order] for values in logits]
    if kind == "spread":
        scaled = []
        for values in logits:
            centred = values.astype(np.float64) - values.mean(axis=1, keepdims=True)
            std = centred.std(axis=1, keepdims=True)
            scaled.append(np.where(std > 0, centred * value / np.where(std > 0, std, 1.0), 0.0).astype(np.float32))
        return scaled
    return logits


def _prepare_directory(directory, settings, overwrite):
    """Makes ``directory`` ready for :func:`write`; returns the views already finished."""
    open_for_writing(directory, overwrite)
    progress = os.path.join(directory, PROGRESS)
    if not os.path.exists(progress):
        write_json(progress, dict(settings=settings, shards={}))
        return {}
    state = read_json(progress)
    if state.get("settings") != settings:
        raise ConfigError(
            f"{directory} holds an unfinished cache made with other settings ({PROGRESS}); pass --overwrite "
            "to replace it, or use another directory."
        )
    logging.info("Resuming the soft-label cache in %s: %d view(s) already written.", directory, len(state["shards"]))
    return {int(view): shards for view, shards in state["shards"].items()}


def write(
    config,
    splits,
    sources,
    directory,
    views,
    top_k=0,
    dtype="float16",
    batch_size=256,
    examples_per_shard=10_000,
    overwrite=False,
    verbose=1,
    control="",
):
    """Runs ``sources`` over ``views`` views of the training set and stores their logits.

    Rerunning after an interruption resumes with the first unfinished view.

    Args:
        config: the :class:`sskt_tf.training.config.TrainConfig` of the runs the cache
            will serve (its dataset, sources, ``augment`` and ``seed``, which
            draws the views).
        splits: the :class:`sskt_tf.data.Splits` of ``config.dataset``.
        sources: the built :class:`sskt_tf.sources.Source` list of ``config``.
        directory: the cache directory.
        views: number of views K per image (1 without ``config.augment``).
        top_k: keep only each source's ``top_k`` largest logits (0: all).
        dtype: ``float16`` or ``float32`` storage.
        batch_size: images per source call.
        examples_per_shard: records per TFRecord file.
        overwrite: replace a complete or different cache in ``directory``.
        verbose: 1 shows a progress bar per view.
        control: a study's control stored instead of the sources' own logits
            (:func:`control_logits`): ``"shuffle"`` or ``"spread:S"``; empty
            for the sources' logits. The cache's settings record it.

    Returns:
        The manifest dict (also written to ``<directory>/manifest.json``).
    """
    if views < 1 or (views > 1 and not config.augment):
        raise ConfigError(
            f"--views={views}: use at least 1, and exactly 1 with --noaugment (all views would be equal)."
        )
    if dtype not in DTYPES:
        raise ConfigError(f"Unknown cache dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if top_k < 0 or examples_per_shard < 1 or batch_size < 1:
        raise ConfigError("--top_k must be >= 0, and --examples_per_shard and --cache_batch_size positive.")
    smallest = min(source.num_classes for source in sources)
    if top_k >= smallest:
        raise ConfigError(
            f"--top_k={top_k} keeps every class of a source with {smallest}: use 0 (all logits) or fewer."
        )
    parsed_control = parse_control(control)
    seed = max(config.seed, 0)
    settings = training_settings(config, splits.image_size, splits.info["train_examples"], splits.unlabeled_examples)
    # Every view must have the same shards (training indexes them as a [views, shards] table).
    settings.update(views=views, top_k=top_k, dtype=dtype, seed=seed, examples_per_shard=examples_per_shard)
    if control:
        settings["control"] = control
    finished = _prepare_directory(directory, settings, overwrite)

    run_sources = tf.function(
        lambda images: [source(images, training=False) for source in sources], jit_compile=config.jit_compile
    )
    # Fingerprints computed once, not once per view; unlabelled images (if any) after the labelled ones.
    examples = indexed_examples(splits.with_unlabeled())
    total = splits.info["train_examples"] and splits.info["train_examples"] + splits.unlabeled_examples
    start = time.time()
    for view in range(views):
        if view in finished:
            continue
        view_batches = (
            examples.map(
                lambda index, image, label, fingerprint, view=view: (
                    index,
                    views_lib.augment_view(image, index, tf.constant(view, tf.int64), seed, config.augment),
                    fingerprint,
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            .batch(batch_size)
            .prefetch(2)
        )
        finished[view] = _write_view(
            directory,
            view,
            view_batches,
            run_sources,
            top_k,
            dtype,
            examples_per_shard,
            total,
            verbose,
            lambda logits, batch, view=view: control_logits(logits, parsed_control, (seed, view, batch)),
        )
        write_json(os.path.join(directory, PROGRESS), dict(settings=settings, shards=finished))
        logging.info("View %d/%d of the soft-label cache written.", view + 1, views)
    manifest = dict(
        settings=settings,
        sources=[dict(name=source.name, num_classes=source.num_classes) for source in sources],
        shards=[finished[view] for view in range(views)],
        mixed_precision=keras.mixed_precision.global_policy().name,
        seconds=round(time.time() - start, 1),
    )
    write_json(os.path.join(directory, MANIFEST), manifest)
    return manifest


def _write_view(directory, view, batches, run_sources, top_k, dtype, examples_per_shard, total, verbose, control):
    """Writes one view's shards (under temporary names until all are done); returns their descriptions."""
    progress = keras.utils.Progbar(total, unit_name="image") if verbose else None
    shards, writer, count = [], None, 0
    try:
        for batch, (indices, images, fingerprints) in enumerate(batches):
            logits = [np.asarray(source_logits, np.float32) for source_logits in run_sources(images)]
            if not all(np.isfinite(source_logits).all() for source_logits in logits):
                raise ConfigError(
                    f"A source returned non-finite logits in view {view} (examples {int(indices[0])}..): "
                    "check its weights."
                )
            logits = control(logits, batch)
            for row, (index, fingerprint) in enumerate(zip(indices.numpy(), fingerprints.numpy())):
                if count % examples_per_shard == 0:
                    if writer:
                        writer.close()
                    shards.append(dict(file=shard_name(view, len(shards)), examples=0))
                    writer = tf.io.TFRecordWriter(os.path.join(directory, shards[-1]["file"] + ".partial"))
                writer.write(
                    _serialize(index, fingerprint, [source_logits[row] for source_logits in logits], top_k, dtype)
                )
                shards[-1]["examples"] += 1
                count += 1
            if progress:
                progress.add(len(indices))
    finally:
        if writer:
            writer.close()
    for shard in shards:
        path = os.path.join(directory, shard["file"])
        os.replace(path + ".partial", path)
        shard["bytes"] = os.path.getsize(path)
    return shards
