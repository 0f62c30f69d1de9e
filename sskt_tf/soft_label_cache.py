"""Soft-label cache: the sources' logits on K fixed views of every training image.

Online SSKT runs every frozen source on every training batch, which costs far
more than training the small target. :func:`write` runs the sources once over
``K`` deterministic augmented views of the training set (see
:mod:`sskt_tf.data.views`) and stores their logits; :class:`SoftLabelCache`
then feeds training with view ``epoch mod K`` of each image together with its
cached logits, so the sources never run during training.

Layout of a cache directory:

* ``view-<v>-shard-<s>.tfrecord``: one ``tf.train.Example`` per training
  example of view ``v``, in training-set order, with ``index``, a
  ``fingerprint`` of the original image and label, and per source ``i``
  either ``logits_<i>`` (float16 or float32 bytes) or, with top-k,
  ``top_k_values_<i>`` and ``top_k_indices_<i>``.
* ``progress.json``: the settings and the views finished so far (an
  interrupted :func:`write` resumes from it).
* ``manifest.json``: written last; its presence marks a complete cache.

Trade-off: a cache gives K distinct augmentations of each image over the whole
run, where online training draws a new one every epoch (200 with the paper's
schedule); the sources' soft labels are exact for those K views.
"""

import hashlib
import json
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from sskt_tf.data import views as views_lib
from sskt_tf.data.pipeline import shard_by_data
from sskt_tf.errors import ConfigError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
DTYPES = ("float16", "float32")
# Logit given to the classes outside a source's top k: softmax and sigmoid turn it into
# exactly 0, so the soft labels are the source's distribution renormalised over its top k.
TOP_K_FILL = -1e4
# Marks the tf.data assertion that fails when the training data is not what the cache was made from.
MISMATCH_MARKER = "soft-label cache mismatch"
_TRAINING_SETTINGS = ("dataset", "image_size", "augment", "sources", "source_weights", "places365_weights",
                      "source_scale", "source_image_size", "classes", "train_examples_per_class", "subset_seed")


@keras.saving.register_keras_serializable(package="sskt_tf")
class CachedSource(keras.layers.Layer):
    """Stands for a source whose logits come from a soft-label cache.

    It has the source's name and class count (so :class:`sskt_tf.SSKTModel`
    builds the same auxiliary head) but no network: training batches must carry
    the logits (``{"images": ..., "soft_labels": (...)}``).

    Args:
        num_classes: size of the source's label space.
        name: the source's name.
    """

    runnable = False

    def __init__(self, num_classes, name, **kwargs):
        kwargs.pop("trainable", None)
        super().__init__(name=name, trainable=False, **kwargs)
        self.num_classes = int(num_classes)

    def call(self, images):
        raise ConfigError(
            f"Source {self.name!r} is a placeholder for cached soft labels: train on batches that carry them, "
            "({'images': ..., 'soft_labels': (...)}, labels), e.g. from SoftLabelCache.train_pipeline."
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config["num_classes"] = self.num_classes
        return config


def training_settings(config, image_size, train_examples):
    """What a cache must have been made with to serve the run ``config``.

    Args:
        config: a :class:`sskt_tf.config.TrainConfig`.
        image_size: the dataset's image side length.
        train_examples: number of training examples (None if unknown).

    Returns:
        A JSON-serialisable dict.
    """
    settings = {name: getattr(config, name) for name in _TRAINING_SETTINGS}
    settings.update(image_size=int(image_size), sources=[s for s in config.sources if s.strip()],
                    train_examples=train_examples, format=FORMAT_VERSION, classes=list(config.classes),
                    # The subset seed draws nothing when every example is kept.
                    subset_seed=config.subset_seed if config.train_examples_per_class is not None else None)
    # A weights or model file replaced by another one under the same name (a fine-tuned
    # source, same architecture and size) is a different source.
    settings["file_sha256"] = {
        path: _sha256(os.path.expanduser(path))
        for path in (config.source_weights, config.places365_weights, *settings["sources"])
        if os.path.isfile(os.path.expanduser(path))
    }
    return settings


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe_difference(name, cached, wanted):
    flag = f"--{name}" if name in _TRAINING_SETTINGS else name
    return f"{flag}: cache {cached!r}, this run {wanted!r}"


def example_fingerprint(image, label):
    """An int64 fingerprint of an example's pixels and label."""
    data = tf.strings.join([tf.io.serialize_tensor(image), tf.io.serialize_tensor(tf.cast(label, tf.int64))])
    return tf.strings.to_hash_bucket_fast(data, 2**62)


def indexed_examples(train_examples, cache=True):
    """``(index, image, label, fingerprint)`` of the training examples, in order.

    Args:
        train_examples: ``(uint8 image, label)`` in their fixed order.
        cache: keep the result (decoded images, fingerprints) in memory.

    Returns:
        A dataset of ``(int64 index, image, label, int64 fingerprint)``.
    """
    examples = train_examples.enumerate().map(
        lambda index, example: (index, example[0], example[1], example_fingerprint(*example)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
    )
    return examples.cache() if cache else examples


def _shard_name(view, shard):
    return f"view-{view:05d}-shard-{shard:05d}.tfrecord"


def _write_json(path, value):
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(partial, path)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigError(f"Could not read {path} ({error}); delete the cache directory and build it again.") from error


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


def _prepare_directory(directory, settings, overwrite):
    """Makes ``directory`` ready for :func:`write`; returns the views already finished."""
    manifest, progress = os.path.join(directory, MANIFEST), os.path.join(directory, PROGRESS)
    if overwrite and os.path.isdir(directory):
        for name in os.listdir(directory):
            if name in (MANIFEST, PROGRESS) or name.startswith("view-"):
                os.remove(os.path.join(directory, name))
    if os.path.exists(manifest):
        raise ConfigError(f"{directory} already holds a complete soft-label cache; pass --overwrite to build it again.")
    os.makedirs(directory, exist_ok=True)
    if not os.path.exists(progress):
        _write_json(progress, dict(settings=settings, shards={}))
        return {}
    state = _read_json(progress)
    if state.get("settings") != settings:
        raise ConfigError(
            f"{directory} holds an unfinished cache made with other settings ({PROGRESS}); pass --overwrite "
            "to replace it, or use another directory."
        )
    logging.info("Resuming the soft-label cache in %s: %d view(s) already written.", directory, len(state["shards"]))
    return {int(view): shards for view, shards in state["shards"].items()}


def write(config, splits, sources, directory, views, top_k=0, dtype="float16", batch_size=256,
          examples_per_shard=10_000, overwrite=False, verbose=1):
    """Runs ``sources`` over ``views`` views of the training set and stores their logits.

    Rerunning after an interruption resumes with the first unfinished view.

    Args:
        config: the :class:`sskt_tf.config.TrainConfig` of the runs the cache
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

    Returns:
        The manifest dict (also written to ``<directory>/manifest.json``).
    """
    if views < 1 or (views > 1 and not config.augment):
        raise ConfigError(f"--views={views}: use at least 1, and exactly 1 with --noaugment (all views would be equal).")
    if dtype not in DTYPES:
        raise ConfigError(f"Unknown cache dtype {dtype!r}; choose one of {', '.join(DTYPES)}.")
    if top_k < 0 or examples_per_shard < 1 or batch_size < 1:
        raise ConfigError("--top_k must be >= 0, and --examples_per_shard and --cache_batch_size positive.")
    smallest = min(source.num_classes for source in sources)
    if top_k >= smallest:
        raise ConfigError(f"--top_k={top_k} keeps every class of a source with {smallest}: use 0 (all logits) or fewer.")
    seed = max(config.seed, 0)
    settings = training_settings(config, splits.image_size, splits.info["train_examples"])
    # Every view must have the same shards (training indexes them as a [views, shards] table).
    settings.update(views=views, top_k=top_k, dtype=dtype, seed=seed, examples_per_shard=examples_per_shard)
    finished = _prepare_directory(directory, settings, overwrite)

    run_sources = tf.function(lambda images: [source(images, training=False) for source in sources],
                              jit_compile=config.jit_compile)
    examples = indexed_examples(splits.train)  # fingerprints computed once, not once per view
    start = time.time()
    for view in range(views):
        if view in finished:
            continue
        view_batches = examples.map(
            lambda index, image, label, fingerprint, view=view: (
                index,
                views_lib.augment_view(image, index, tf.constant(view, tf.int64), seed, config.augment),
                fingerprint,
            ),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
        ).batch(batch_size).prefetch(2)
        finished[view] = _write_view(directory, view, view_batches, run_sources, top_k, dtype, examples_per_shard,
                                     splits.info["train_examples"], verbose)
        _write_json(os.path.join(directory, PROGRESS), dict(settings=settings, shards=finished))
        logging.info("View %d/%d of the soft-label cache written.", view + 1, views)
    manifest = dict(
        settings=settings,
        sources=[dict(name=source.name, num_classes=source.num_classes) for source in sources],
        shards=[finished[view] for view in range(views)],
        mixed_precision=keras.mixed_precision.global_policy().name,
        seconds=round(time.time() - start, 1),
    )
    _write_json(os.path.join(directory, MANIFEST), manifest)
    return manifest


def _write_view(directory, view, batches, run_sources, top_k, dtype, examples_per_shard, total, verbose):
    """Writes one view's shards (under temporary names until all are done); returns their descriptions."""
    progress = keras.utils.Progbar(total, unit_name="image") if verbose else None
    shards, writer, count = [], None, 0
    try:
        for indices, images, fingerprints in batches:
            logits = [np.asarray(l, np.float32) for l in run_sources(images)]
            if not np.all([np.isfinite(l).all() for l in logits]):
                raise ConfigError(f"A source returned non-finite logits in view {view} (examples {int(indices[0])}..): "
                                  "check its weights.")
            for row, (index, fingerprint) in enumerate(zip(indices.numpy(), fingerprints.numpy())):
                if count % examples_per_shard == 0:
                    if writer:
                        writer.close()
                    shards.append(dict(file=_shard_name(view, len(shards)), examples=0))
                    writer = tf.io.TFRecordWriter(os.path.join(directory, shards[-1]["file"] + ".partial"))
                writer.write(_serialize(index, fingerprint, [l[row] for l in logits], top_k, dtype))
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


class SoftLabelCache:
    """A complete soft-label cache, opened for training.

    Args:
        directory: a directory written by :func:`write`.

    Raises:
        ConfigError: no cache, an unfinished one, or missing or truncated files.
    """

    def __init__(self, directory):
        self.directory = directory
        manifest_path = os.path.join(directory, MANIFEST)
        if not os.path.exists(manifest_path):
            if os.path.exists(os.path.join(directory, PROGRESS)):
                raise ConfigError(
                    f"The soft-label cache in {directory} is unfinished (its writing was interrupted): rerun the same "
                    "tools/cache_soft_labels.py command to complete it."
                )
            raise ConfigError(
                f"No soft-label cache in {directory!r}: build it first with python tools/cache_soft_labels.py "
                f"--flagfile=<the run's flags> --soft_label_cache={directory} --views=K."
            )
        manifest = _read_json(manifest_path)
        if manifest.get("settings", {}).get("format") != FORMAT_VERSION:
            raise ConfigError(f"The soft-label cache in {directory} has another format version; build it again.")
        self.manifest = manifest
        self.settings = manifest["settings"]
        self.views = int(self.settings["views"])
        for shards in manifest["shards"]:
            for shard in shards:
                path = os.path.join(directory, shard["file"])
                if not os.path.exists(path) or os.path.getsize(path) != shard["bytes"]:
                    raise ConfigError(f"Soft-label cache file {path} is missing or damaged; build the cache again.")

    @property
    def examples(self):
        """Number of training examples the cache holds (per view)."""
        return sum(int(shard["examples"]) for shard in self.manifest["shards"][0])

    @property
    def source_classes(self):
        """``[(name, num_classes)]`` of the cached sources, in order."""
        return [(source["name"], int(source["num_classes"])) for source in self.manifest["sources"]]

    def check(self, config, image_size, train_examples):
        """Refuses to serve a run whose data or sources differ from the cache's.

        Args:
            config: the run's :class:`sskt_tf.config.TrainConfig`.
            image_size: the run's image side length.
            train_examples: the run's number of training examples.

        Raises:
            ConfigError: listing every difference.
        """
        wanted = training_settings(config, image_size, train_examples)
        differences = [
            _describe_difference(name, self.settings.get(name), value)
            for name, value in wanted.items()
            if self.settings.get(name) != value
        ]
        if differences:
            raise ConfigError(
                f"The soft-label cache in {self.directory} was made for another run: {'; '.join(differences)}. "
                "Build a cache for this run with tools/cache_soft_labels.py (same flags, another directory)."
            )

    def placeholder_sources(self):
        """One :class:`CachedSource` per cached source (for :class:`sskt_tf.SSKTModel`)."""
        return [CachedSource(num_classes, name=name) for name, num_classes in self.source_classes]

    def _parse(self, record):
        """``(index, fingerprint, [logits per source])`` of one record."""
        sources = self.source_classes
        top_k, dtype = int(self.settings["top_k"]), tf.as_dtype(self.settings["dtype"])
        spec = {"index": tf.io.FixedLenFeature([], tf.int64), "fingerprint": tf.io.FixedLenFeature([], tf.int64)}
        for i in range(len(sources)):
            names = (f"top_k_values_{i}", f"top_k_indices_{i}") if top_k else (f"logits_{i}",)
            spec.update({name: tf.io.FixedLenFeature([], tf.string) for name in names})
        parsed = tf.io.parse_single_example(record, spec)
        logits = []
        for i, (_, num_classes) in enumerate(sources):
            if top_k:
                values = tf.cast(tf.io.decode_raw(parsed[f"top_k_values_{i}"], dtype), tf.float32)
                indices = tf.io.decode_raw(parsed[f"top_k_indices_{i}"], tf.int32)
                dense = tf.fill([num_classes], tf.constant(TOP_K_FILL, tf.float32))
                logits.append(tf.tensor_scatter_nd_update(dense, indices[:, None], values))
            else:
                logits.append(tf.reshape(tf.cast(tf.io.decode_raw(parsed[f"logits_{i}"], dtype), tf.float32), [num_classes]))
        return parsed["index"], parsed["fingerprint"], tuple(logits)

    def view_examples(self, examples, view):
        """An epoch's examples of one view with their soft labels, checked against the data.

        Args:
            examples: ``(index, uint8 image, label, fingerprint)``: the training
                examples in their fixed order (:func:`indexed_examples`).
            view: the view (int64 scalar tensor or int).

        Returns:
            A dataset of dicts (``index``, ``image``, ``label``,
            ``soft_labels``) that fails with :data:`MISMATCH_MARKER` in its
            error message when an example is not the one the cache was made
            from.
        """
        files = tf.constant([[os.path.join(self.directory, s["file"]) for s in shards] for shards in self.manifest["shards"]])
        records = tf.data.TFRecordDataset(tf.gather(files, view))

        def join(example, record):
            index, image, label, fingerprint = example
            cached_index, cached_fingerprint, logits = self._parse(record)
            check = tf.debugging.assert_equal(
                tf.stack([cached_index, cached_fingerprint]), tf.stack([index, fingerprint]),
                message=f"{MISMATCH_MARKER}: a training example differs from the one the cache holds at this index "
                        "(index, fingerprint)",
            )
            with tf.control_dependencies([check]):
                return dict(index=tf.identity(index), image=image, label=label, soft_labels=logits)

        return tf.data.Dataset.zip(examples, records).map(join, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def train_pipeline(self, train_examples, batch_size, seed=None, start_epoch=0, epochs=1, steps_per_epoch=None,
                       cache=True):
        """Training batches for epochs ``start_epoch .. epochs - 1``, one view per epoch.

        Epoch ``e`` uses view ``e mod K`` in an order fixed by ``(seed, e)``
        (:func:`sskt_tf.data.views.shuffled_epoch`); the next epoch is
        assembled while the current one trains. The dataset covers every
        remaining epoch, so pass ``steps_per_epoch`` to ``fit`` (Keras then
        keeps one iterator across epochs).

        Args:
            train_examples: ``(uint8 image, label)`` in the order the cache was
                made from (:attr:`sskt_tf.data.Splits.train`).
            batch_size: global batch size.
            seed: shuffling seed (None: not reproducible).
            start_epoch: first epoch (a resumed run's).
            epochs: number of epochs of the whole run.
            steps_per_epoch: batches per epoch; None = one pass over the data.
            cache: keep the decoded images in memory.

        Returns:
            A dataset of ``({"images": float32, "soft_labels": (...)}, labels)`` batches.
        """
        examples = indexed_examples(train_examples, cache)

        def epoch_examples(epoch):
            return epoch, views_lib.shuffled_epoch(self.view_examples(examples, epoch % self.views), epoch, seed, self.examples)

        def epoch_batches(epoch, shuffled):
            batches = views_lib.view_batches(shuffled, epoch % self.views, batch_size, int(self.settings["seed"]),
                                             augment=self.settings["augment"])
            return batches.take(steps_per_epoch) if steps_per_epoch else batches

        # One epoch is assembled ahead (map + prefetch) while the current one is consumed.
        epochs_dataset = tf.data.Dataset.range(start_epoch, epochs).map(epoch_examples).prefetch(1)
        return shard_by_data(epochs_dataset.flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE))
