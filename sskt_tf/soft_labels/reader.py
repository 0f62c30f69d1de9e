"""Reading a soft-label cache: training batches that carry the cached logits."""

import math
import os

import tensorflow as tf

from sskt_tf.data import views as views_lib
from sskt_tf.data.pipeline import UNLABELED_SEED_OFFSET, mix_batches, shard_by_data
from sskt_tf.errors import ConfigError
from sskt_tf.soft_labels.placeholder import CachedSource
from sskt_tf.soft_labels.settings import (
    FORMAT_VERSION,
    MANIFEST,
    MISMATCH_MARKER,
    PROGRESS,
    TOP_K_FILL,
    comparable,
    describe_difference,
    indexed_examples,
    read_json,
    training_settings,
)


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
        manifest = read_json(manifest_path)
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
        """Number of training examples the cache holds (per view), unlabelled ones included."""
        return sum(int(shard["examples"]) for shard in self.manifest["shards"][0])

    @property
    def unlabeled_examples(self):
        """Number of unlabelled images the cache holds (after the labelled ones)."""
        return int(self.settings.get("unlabeled_examples", 0))

    @property
    def labelled_examples(self):
        """Number of labelled training examples the cache holds."""
        return self.examples - self.unlabeled_examples

    @property
    def source_classes(self):
        """``[(name, num_classes)]`` of the cached sources, in order."""
        return [(source["name"], int(source["num_classes"])) for source in self.manifest["sources"]]

    def check(self, config, image_size, train_examples, unlabeled_examples=0):
        """Refuses to serve a run whose data or sources differ from the cache's.

        Args:
            config: the run's :class:`sskt_tf.training.config.TrainConfig`.
            image_size: the run's image side length.
            train_examples: the run's number of (labelled) training examples.
            unlabeled_examples: the run's number of unlabelled images.

        Raises:
            ConfigError: listing every difference.
        """
        wanted = training_settings(config, image_size, train_examples, unlabeled_examples)
        cached, compared = comparable(self.settings), comparable(wanted)
        # Files are shown by content (sha256:...): the same path may hold another file. The
        # cache's own settings (views, dtype, ...) are not the run's to compare; the unlabelled
        # images are, whichever side has them.
        names = [*compared, *(name for name in cached if name.startswith("unlabeled_") and name not in compared)]
        differences = [
            describe_difference(name, cached.get(name), compared.get(name))
            for name in names
            if cached.get(name) != compared.get(name)
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
                logits.append(
                    tf.reshape(tf.cast(tf.io.decode_raw(parsed[f"logits_{i}"], dtype), tf.float32), [num_classes])
                )
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
        files = tf.constant(
            [[os.path.join(self.directory, s["file"]) for s in shards] for shards in self.manifest["shards"]]
        )
        records = tf.data.TFRecordDataset(tf.gather(files, view))

        def join(example, record):
            index, image, label, fingerprint = example
            cached_index, cached_fingerprint, logits = self._parse(record)
            check = tf.debugging.assert_equal(
                tf.stack([cached_index, cached_fingerprint]),
                tf.stack([index, fingerprint]),
                message=f"{MISMATCH_MARKER}: a training example differs from the one the cache holds at this index "
                "(index, fingerprint)",
            )
            with tf.control_dependencies([check]):
                return dict(index=tf.identity(index), image=image, label=label, soft_labels=logits)

        return tf.data.Dataset.zip(examples, records).map(join, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def train_pipeline(
        self,
        train_examples,
        batch_size,
        seed=None,
        start_epoch=0,
        epochs=1,
        steps_per_epoch=None,
        cache=True,
        unlabeled_examples=0,
        unlabeled_per_batch=0,
    ):
        """Training batches for epochs ``start_epoch .. epochs - 1``, one view per epoch.

        Epoch ``e`` uses view ``e mod K`` in an order fixed by ``(seed, e)``
        (:func:`sskt_tf.data.views.shuffled_epoch`); the next epoch is
        assembled while the current one trains. The dataset covers every
        remaining epoch, so pass ``steps_per_epoch`` to ``fit`` (Keras then
        keeps one iterator across epochs). With unlabelled images, every batch
        also holds ``unlabeled_per_batch`` of them (view ``e mod K`` too, in an
        order of their own, as many passes as the epoch needs), interleaved
        with the labelled ones (:func:`sskt_tf.data.pipeline.mix_batches`).

        Args:
            train_examples: ``(uint8 image, label)`` in the order the cache was
                made from, unlabelled ones last
                (:meth:`sskt_tf.data.Splits.with_unlabeled`).
            batch_size: global batch size of labelled examples.
            seed: shuffling seed (None: not reproducible).
            start_epoch: first epoch (a resumed run's).
            epochs: number of epochs of the whole run.
            steps_per_epoch: batches per epoch; None = one pass over the labelled data.
            cache: keep the decoded images in memory.
            unlabeled_examples: how many of ``train_examples`` are unlabelled.
            unlabeled_per_batch: unlabelled examples added to every batch (0: none).

        Returns:
            A dataset of ``({"images": float32, "soft_labels": (...)}, labels)`` batches.
        """
        examples = indexed_examples(train_examples, cache)
        labelled = self.examples - unlabeled_examples
        steps = steps_per_epoch or labelled // batch_size
        passes = math.ceil(steps * unlabeled_per_batch / max(1, unlabeled_examples))
        view_seed = int(self.settings["seed"])

        def epoch_examples(epoch):
            everything = views_lib.stacked(self.view_examples(examples, epoch % self.views), self.examples)
            if not unlabeled_per_batch:
                return epoch, views_lib.permuted(everything, epoch, seed)
            is_labelled = everything["index"] < labelled
            labelled_part = views_lib.select(everything, is_labelled)
            unlabelled_part = views_lib.select(everything, ~is_labelled)
            unlabelled_seed = None if seed is None else seed + UNLABELED_SEED_OFFSET
            orders = [views_lib.permuted(unlabelled_part, epoch * passes + p, unlabelled_seed) for p in range(passes)]
            stream = tf.nest.map_structure(lambda *parts: tf.concat(parts, 0), *orders)
            return epoch, views_lib.permuted(labelled_part, epoch, seed), stream

        def epoch_batches(epoch, shuffled, unlabelled=None):
            view = epoch % self.views
            batches = views_lib.view_batches(
                shuffled, view, batch_size, view_seed, augment=self.settings["augment"]
            ).take(steps)
            if not unlabeled_per_batch:
                return batches
            extra = views_lib.view_batches(
                unlabelled, view, unlabeled_per_batch, view_seed, augment=self.settings["augment"]
            )
            return mix_batches(batches, extra, batch_size, unlabeled_per_batch)

        # One epoch is assembled ahead (map + prefetch) while the current one is consumed.
        epochs_dataset = tf.data.Dataset.range(start_epoch, epochs).map(epoch_examples).prefetch(1)
        return shard_by_data(epochs_dataset.flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE))
