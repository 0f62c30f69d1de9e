"""The soft-label cache's format: files, settings and example fingerprints.

Online SSKT runs every frozen source on every training batch, which costs far
more than training the small target. :func:`write` runs the sources once over
``K`` deterministic augmented views of the training set (see
:mod:`sskt_tf.data.views`) and stores their logits; :class:`sskt_tf.soft_labels.reader.SoftLabelCache`
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
import os

import tensorflow as tf

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


_TRAINING_SETTINGS = (
    "dataset",
    "image_size",
    "augment",
    "sources",
    "source_weights",
    "places365_weights",
    "source_scale",
    "source_image_size",
    "classes",
    "train_examples_per_class",
    "subset_seed",
)


# Recorded only when a run has unlabelled images, so caches made before they existed still match.
_UNLABELED_SETTINGS = ("unlabeled_dataset", "unlabeled_from_rest")


def training_settings(config, image_size, train_examples, unlabeled_examples=0):
    """What a cache must have been made with to serve the run ``config``.

    Args:
        config: a :class:`sskt_tf.training.config.TrainConfig`.
        image_size: the dataset's image side length.
        train_examples: number of (labelled) training examples (None if unknown).
        unlabeled_examples: number of unlabelled images after them, which the
            cache covers too.

    Returns:
        A JSON-serialisable dict.
    """
    settings = {name: getattr(config, name) for name in _TRAINING_SETTINGS}
    settings.update(
        image_size=int(image_size),
        sources=[s for s in config.sources if s.strip()],
        train_examples=train_examples,
        format=FORMAT_VERSION,
        classes=list(config.classes),
        # The subset seed draws nothing when every example is kept.
        subset_seed=config.subset_seed if config.train_examples_per_class is not None else None,
    )
    if config.unlabeled_dataset or config.unlabeled_from_rest:
        settings.update({name: getattr(config, name) for name in _UNLABELED_SETTINGS})
        settings["unlabeled_examples"] = int(unlabeled_examples)
    # A weights or model file replaced by another one under the same name (a fine-tuned
    # source, same architecture and size) is a different source.
    settings["file_sha256"] = {
        path: _sha256(os.path.expanduser(path))
        for path in (config.source_weights, config.places365_weights, *settings["sources"])
        if os.path.isfile(os.path.expanduser(path))
    }
    return settings


# Settings that name files: a file is the same source wherever it is and however its path
# is spelled (relative, absolute, another checkout), as long as its bytes are the same.
_FILE_SETTINGS = ("sources", "source_weights", "places365_weights")


def comparable(settings):
    """The settings as a cache and a run compare them: files by content, not by path.

    Every path that ``file_sha256`` lists is replaced by ``sha256:<digest>``, so the
    same file named by another path matches, and another file under the same path
    does not.

    Args:
        settings: a dict from :func:`training_settings` (or a cache's copy of one).

    Returns:
        A new dict without ``file_sha256``.
    """
    digests = settings.get("file_sha256") or {}

    def by_content(value):
        return f"sha256:{digests[value]}" if isinstance(value, str) and value in digests else value

    result = {name: value for name, value in settings.items() if name != "file_sha256"}
    for name in _FILE_SETTINGS:
        value = result.get(name)
        result[name] = [by_content(v) for v in value] if isinstance(value, list) else by_content(value)
    return result


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_difference(name, cached, wanted):
    flag = f"--{name}" if name in (*_TRAINING_SETTINGS, *_UNLABELED_SETTINGS) else name
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
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return examples.cache() if cache else examples


def open_for_writing(directory, overwrite):
    """Makes ``directory`` ready to receive a cache: created, and emptied of an old cache's files on ``overwrite``.

    Args:
        directory: the cache directory (need not exist).
        overwrite: remove the manifest, progress and view files of a cache already there.

    Raises:
        ConfigError: ``directory`` holds a complete cache and ``overwrite`` is false.
    """
    if overwrite and os.path.isdir(directory):
        for name in os.listdir(directory):
            if name in (MANIFEST, PROGRESS) or name.startswith("view-"):
                os.remove(os.path.join(directory, name))
    if os.path.exists(os.path.join(directory, MANIFEST)):
        raise ConfigError(f"{directory} already holds a complete soft-label cache; pass --overwrite to replace it.")
    os.makedirs(directory, exist_ok=True)


def shard_name(view, shard):
    return f"view-{view:05d}-shard-{shard:05d}.tfrecord"


def write_json(path, value):
    partial = f"{path}.partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
    os.replace(partial, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigError(f"Could not read {path} ({error}); delete the cache directory and build it again.") from error
