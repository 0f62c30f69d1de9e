"""The training loop behind ``tools/train.py``: one function, :func:`train`."""

import contextlib
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from sskt_tf import callbacks as callbacks_lib
from sskt_tf import data as data_lib
from sskt_tf import distribute as distribute_lib
from sskt_tf import export as export_lib
from sskt_tf import heads as heads_lib
from sskt_tf import losses as losses_lib
from sskt_tf import methods as methods_lib
from sskt_tf import soft_label_cache as soft_label_cache_lib
from sskt_tf import sources as sources_lib
from sskt_tf import targets as targets_lib
from sskt_tf.config import TrainConfig, to_flagfile
from sskt_tf.errors import ConfigError
from sskt_tf.flags import config_from_flagfile
from sskt_tf.source_flags import build_sources, check_source_flags, open_cache


MIXED_PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def _default_model_dir(config):
    dataset = config.dataset.replace(os.sep, "_").replace(":", "_")
    return os.path.join("runs", f"{dataset}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}")


def _one_of(flag, value, choices):
    if value not in choices:
        raise ConfigError(f"Unknown --{flag}={value}; choose one of {', '.join(choices)}.")


def _check(config):
    """Rejects inconsistent settings before any data is loaded."""
    method = methods_lib.get(config.method)
    _one_of("target", config.target, targets_lib.TARGETS)
    _one_of("head", config.head, heads_lib.HEAD_KINDS)
    _one_of("aux_loss", config.aux_loss, losses_lib.AUX_LOSSES)
    _one_of("target_loss", config.target_loss, losses_lib.TARGET_LOSSES)
    _one_of("distribution_strategy", config.distribution_strategy, distribute_lib.STRATEGIES)
    _one_of("mixed_precision", config.mixed_precision, MIXED_PRECISION_POLICIES)
    sources_lib.parse_scale(config.source_scale)
    if config.soft_label_cache and not method.uses_sources:
        raise ConfigError(f"--soft_label_cache holds sources' soft labels, which --method={config.method} does not use.")
    method.check(config)
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("--epochs and --batch_size must be positive.")
    if config.lr <= 0 or config.temperature <= 0:
        raise ConfigError("--lr and --temperature must be positive.")
    if config.alpha < 0 or config.weight_decay < 0 or config.lr_decay <= 0:
        raise ConfigError("--alpha and --weight_decay must be >= 0 and --lr_decay > 0.")
    if any(m < 0 for m in config.lr_milestones):
        raise ConfigError(f"--lr_milestones must be epoch numbers >= 0, got {config.lr_milestones}.")
    if config.validation_freq < 1:
        raise ConfigError(f"--validation_freq must be >= 1 (validate every N epochs), got {config.validation_freq}.")
    data_subset(config).check()


def data_subset(config):
    """The :class:`sskt_tf.data.Subset` (classes, examples per class) of ``config``."""
    return data_lib.Subset(classes=tuple(config.classes), examples_per_class=config.train_examples_per_class,
                           seed=config.subset_seed)


def validation_epochs(epochs, validation_freq):
    """The 1-based epochs that validate: every ``validation_freq``-th, and always the last.

    Args:
        epochs: the run's number of epochs.
        validation_freq: N of ``--validation_freq``.

    Returns:
        A sorted list of epoch numbers (Keras' ``fit(validation_freq=...)`` takes it).
    """
    return [epoch for epoch in range(1, epochs + 1) if epoch % validation_freq == 0 or epoch == epochs]


def _check_labels(config, data):
    """The target loss and the method must suit the dataset's labels (single or multi-label)."""
    if data.multi_label and config.target_loss != "bce":
        raise ConfigError(f"{config.dataset} is multi-label (multi-hot labels): use --target_loss=bce.")
    if not data.multi_label and config.target_loss == "bce":
        raise ConfigError(f"--target_loss=bce needs multi-hot labels; {config.dataset} has one label an image: "
                          "use --target_loss=ce or focal.")
    if data.multi_label and not methods_lib.get(config.method).multi_label:
        raise ConfigError(f"--method={config.method} trains single-label classifiers; {config.dataset} is multi-label "
                          f"(methods for it: {', '.join(n for n in methods_lib.names() if methods_lib.get(n).multi_label)}).")


def monitored_metric(data):
    """The validation metric that picks ``best.keras``: ``val_mAP`` (multi-label) or ``val_accuracy``."""
    return "val_mAP" if data.multi_label else "val_accuracy"


@contextlib.contextmanager
def dtype_policy(name):
    """Makes ``name`` Keras' global dtype policy inside the block (layers keep it after)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _seed(config):
    if config.seed >= 0:
        keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def load_splits(config, order_seed=None):
    """The :class:`sskt_tf.data.Splits` (unbatched examples) of ``config.dataset``."""
    if order_seed is None and config.seed >= 0:
        order_seed = config.seed
    return data_lib.load_splits(config.dataset, data_dir=config.data_dir or None, image_size=config.image_size or None,
                                download=config.download, order_seed=order_seed, subset=data_subset(config))


def load_data(config, start_epoch=0):
    """The :class:`sskt_tf.data.Data` (train and validation pipelines) of ``config``.

    Args:
        config: a :class:`TrainConfig`.
        start_epoch: the first epoch to train (a resumed run's); with
            ``--soft_label_cache`` it picks the views the training batches start with.

    Returns:
        A :class:`sskt_tf.data.Data`. With ``--soft_label_cache`` its training
        batches cover every remaining epoch and carry the cached soft labels.
    """
    seed = config.seed if config.seed >= 0 else None
    cache = open_cache(config)
    if cache is None:
        return data_lib.load(
            config.dataset, config.batch_size, data_dir=config.data_dir or None, image_size=config.image_size or None,
            seed=seed, augment=config.augment, download=config.download, cache=config.cache, subset=data_subset(config),
        )
    splits = load_splits(config, order_seed=cache.settings["seed"])
    val = data_lib.eval_pipeline(splits.val, config.batch_size, cache=config.cache)
    cache.check(config, splits.image_size, splits.info["train_examples"])
    train = cache.train_pipeline(splits.train, config.batch_size, seed=seed, start_epoch=start_epoch, epochs=config.epochs,
                                 steps_per_epoch=cache_steps_per_epoch(config, cache), cache=config.cache)
    return splits.data(train, val)


def cache_steps_per_epoch(config, cache):
    """Batches per epoch when training from ``cache``."""
    full = cache.examples // config.batch_size
    if full == 0:
        raise ConfigError(f"--batch_size={config.batch_size} is larger than the {cache.examples} cached training examples.")
    return min(config.steps_per_epoch, full) if config.steps_per_epoch else full


def epoch_batches(config, data, cache=None):
    """The training batches ``fit`` iterates and the number of steps of one epoch.

    Every epoch gets an explicit length: the cache's, ``--steps_per_epoch``, or one
    pass over the training examples when the dataset's length is unknown to
    tf.data (folder datasets, which skip unreadable files; class subsets). Keras
    3.15 counts a phantom step at the end of every epoch of a dataset of unknown
    length: it adds one batch to the epoch's metric counts (and one to
    ``optimizer.iterations``) without its values, so the epoch's training loss and
    accuracy come out too low by one batch in ``steps + 1`` (the weights are
    unaffected). Without a cache the dataset is repeated, so an epoch never runs
    out early: with an unreadable file skipped, it takes its last images from the
    next pass.

    Args:
        config: a :class:`TrainConfig`.
        data: the run's :class:`sskt_tf.data.Data`.
        cache: the run's :class:`SoftLabelCache`, or None.

    Returns:
        ``(dataset, steps_per_epoch)``; ``steps_per_epoch`` is None when the
        dataset's length is known (Keras then counts it itself).
    """
    if cache is not None:
        # One dataset holds every remaining epoch: fit must know the epoch length.
        return data.train, cache_steps_per_epoch(config, cache)
    if config.steps_per_epoch:
        return data.train.repeat(), config.steps_per_epoch
    if int(data.train.cardinality()) >= 0 or not data.train_examples:
        return data.train, None
    return data.train.repeat(), data.train_examples // config.batch_size


def build_model(config, data):
    """The model of ``config.method`` on ``data`` (e.g. SSKT: target + sources + heads).

    Args:
        config: a :class:`TrainConfig`.
        data: the :class:`sskt_tf.data.Data` it will train on.

    Returns:
        An uncompiled ``keras.Model`` whose ``target`` attribute is the network
        that is saved and exported.
    """
    if config.num_classes and config.num_classes != data.num_classes:
        raise ConfigError(
            f"--num_classes={config.num_classes} but {config.dataset} has {data.num_classes} classes; "
            "leave --num_classes at 0 to use the dataset's."
        )
    return methods_lib.get(config.method).build(config, data)


def compile_model(model, config, multi_label=False):
    """Compiles ``model`` with the SGD, losses and metrics of ``config``.

    Multi-label data gets no compiled metric: its mAP needs the whole
    validation set (:class:`sskt_tf.callbacks.MeanAveragePrecision`).
    """
    optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    model.compile(
        optimizer=optimizer,
        loss=config.target_loss,
        weight_decay=config.weight_decay,
        metrics=[] if multi_label else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
        **methods_lib.get(config.method).compile_kwargs(config),
    )


def _callbacks(config, data, output_dir, backup, resume_epoch):
    nan_guard = callbacks_lib.StopOnNonFiniteLoss()
    saver = callbacks_lib.SaveTarget(output_dir, monitor=monitored_metric(data), resume_epoch=resume_epoch)
    # First: the callbacks after it read the mAP from the epoch's logs.
    mean_ap = [callbacks_lib.MeanAveragePrecision(
        data.val, output_path=os.path.join(output_dir, "val_ap.json"), class_names=data.class_names,
        validation_epochs=validation_epochs(config.epochs, config.validation_freq),
    )] if data.multi_label else []
    return nan_guard, saver, mean_ap + [
        nan_guard,
        keras.callbacks.LearningRateScheduler(callbacks_lib.step_schedule(config.lr, config.lr_milestones, config.lr_decay)),
        callbacks_lib.HistoryLogger(os.path.join(output_dir, "history.csv")),
        keras.callbacks.TensorBoard(log_dir=os.path.join(output_dir, "tensorboard")),
        saver,
        # Last: an epoch counts as done once the history row and checkpoints are written.
        # (fit reads the restored epoch after every callback's on_train_begin.)
        backup,
    ]


@contextlib.contextmanager
def _cache_mismatch_as_config_error(config):
    """Turns the cache pipeline's failed data check into a ConfigError."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        if soft_label_cache_lib.MISMATCH_MARKER not in str(error):
            raise
        raise ConfigError(
            f"The training data differs from the data the soft-label cache in {config.soft_label_cache} was made "
            "from (same dataset name and size, other images or labels or order). Build the cache again from this data."
        ) from None


def _output_dir(model_dir, strategy):
    """``model_dir`` for the chief; ``model_dir/worker_<i>`` for the other workers."""
    if distribute_lib.is_chief(strategy):
        return model_dir
    task_type, task_id = distribute_lib.worker_id(strategy)
    return os.path.join(model_dir, f"{task_type}_{task_id}")


# Flags that change the networks or the training examples: a backup cannot resume under other ones.
_ARCHITECTURE_FLAGS = ("method", "dataset", "image_size", "target", "sources", "head", "feature_layers",
                       "soft_label_cache", "mixed_precision", "teacher", "maxl_psi", "classes",
                       "train_examples_per_class", "subset_seed")


def _prepare_resume(config, output_dir, backup_dir):
    """Returns the epoch the run resumes from, and makes ``history.csv`` agree with it.

    Raises:
        ConfigError: ``output_dir`` holds a finished run (``results.json``, no
            backup), or a backup of different networks.
    """
    resume_epoch = callbacks_lib.FiniteBackupAndRestore.saved_epoch(backup_dir)
    if resume_epoch == 0 and os.path.exists(os.path.join(output_dir, "results.json")):
        raise ConfigError(
            f"{output_dir} holds a finished run (results.json); use another --model_dir, or delete it to train again."
        )
    flags_file = os.path.join(output_dir, "flags.txt")
    if resume_epoch and os.path.exists(flags_file):
        previous = config_from_flagfile(flags_file)
        changed = [f"--{name}" for name in _ARCHITECTURE_FLAGS if getattr(previous, name) != getattr(config, name)]
        if changed:
            raise ConfigError(
                f"{output_dir} holds a backup of a run with other {', '.join(changed)}; resume it with its own "
                f"flags (--flagfile={flags_file}), or use another --model_dir."
            )
    # Rows of epochs the backup does not cover (the kill came after the history row but
    # before the backup) are trained again, so drop them: every epoch appears exactly once.
    callbacks_lib.truncate_history(os.path.join(output_dir, "history.csv"), resume_epoch)
    if resume_epoch:
        logging.info("Resuming from the backup in %s after epoch %d.", backup_dir, resume_epoch)
    return resume_epoch


def _write_results(model_dir, results):
    with open(os.path.join(model_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


def train(config):
    """Trains the target with ``config.method`` (SSKT or a baseline) as ``config`` says.

    Writes to ``config.model_dir``: ``flags.txt`` (a flagfile that reproduces
    the run), ``history.csv``, TensorBoard events under ``tensorboard/``,
    ``best.keras``/``last.keras`` (target only), ``results.json``, and while
    training ``backup/`` (weights, optimizer state and epoch, removed at the
    end). A run that was killed resumes from its last completed epoch when
    called again with the same ``model_dir``. Under multi-worker training the
    chief writes there and every other worker into ``model_dir/worker_<i>/``.
    With ``config.export_dir``, ``best.keras`` is exported as a SavedModel.

    Args:
        config: a :class:`sskt_tf.config.TrainConfig`.

    Returns:
        The results dict written to ``results.json`` (final ``val_*`` metrics
        under Keras' names, ``best_val_accuracy`` (``best_val_mAP`` on
        multi-label data), ``best_epoch``, ``method``, ...).

    Raises:
        ConfigError: bad settings, missing data or weights.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    config = dataclasses.replace(config)
    _check(config)
    # Multi-worker strategies must exist before any other TensorFlow work.
    strategy = distribute_lib.get_strategy(config.distribution_strategy, config.tpu)
    if distribute_lib.is_multi_worker(strategy) and (not config.model_dir or config.seed < 0):
        raise ConfigError(
            "Multi-worker training needs an explicit --model_dir (the default name holds each worker's start "
            "time) and --seed >= 0 (every worker must shuffle the data the same way)."
        )
    config.model_dir = config.model_dir or _default_model_dir(config)
    output_dir = _output_dir(config.model_dir, strategy)
    backup_dir = os.path.join(output_dir, "backup")
    os.makedirs(output_dir, exist_ok=True)
    resume_epoch = _prepare_resume(config, output_dir, backup_dir)
    with open(os.path.join(output_dir, "flags.txt"), "w") as f:
        f.write(to_flagfile(config))
    _seed(config)

    data = load_data(config, start_epoch=resume_epoch)
    if data.train_examples is not None and data.train_examples < config.batch_size:
        raise ConfigError(
            f"--batch_size={config.batch_size} is larger than the {data.train_examples} training examples "
            "(training drops partial batches, so no step would run): lower --batch_size."
        )
    _check_labels(config, data)
    if data.subset:
        with open(os.path.join(output_dir, "subset.json"), "w") as f:
            json.dump(data.subset, f)
    with strategy.scope(), dtype_policy(config.mixed_precision):
        model = build_model(config, data)
        compile_model(model, config, multi_label=data.multi_label)
    logging.info(
        "Training %s with %s (%d parameters) on %s (%d classes, %sx%s) with %d source(s) for %d epochs on %d "
        "replica(s) in %s.", model.target.name, config.method, model.target.count_params(), config.dataset,
        data.num_classes, data.image_size, data.image_size, len(model.sources), config.epochs,
        strategy.num_replicas_in_sync, output_dir,
    )
    backup = callbacks_lib.FiniteBackupAndRestore(backup_dir)
    nan_guard, saver, callbacks = _callbacks(config, data, output_dir, backup, resume_epoch)
    cache = open_cache(config)
    train_batches, steps_per_epoch = epoch_batches(config, data, cache)
    start = time.time()
    with warnings.catch_warnings(), _cache_mismatch_as_config_error(config):
        # Keras warns "Your input ran out of data; interrupting training" at the end of the
        # first pass over any dataset of unknown length (folder validation data) and then
        # goes on as it should.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        # A run killed after its last backup but before results.json has nothing left to
        # train (and from a cache, no batches left to build the model from).
        if resume_epoch < config.epochs:
            model.fit(
                train_batches, validation_data=data.val, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                validation_freq=validation_epochs(config.epochs, config.validation_freq),
                callbacks=callbacks, verbose=config.verbose, shuffle=False,  # the pipeline shuffles
            )
    seconds = time.time() - start
    nan_guard.raise_if_failed(output_dir)
    # The last epoch's metrics (its val_* are the final weights on the validation split),
    # from history.csv, which holds every epoch of a resumed run too.
    history = callbacks_lib.read_history(os.path.join(output_dir, "history.csv"))
    results = callbacks_lib.history_values(history[-1]) if history else {}
    results.update(
        **{f"best_{saver.monitor}": saver.best if math.isfinite(saver.best) else None},
        best_epoch=None if saver.best_epoch is None else saver.best_epoch + 1,
        epochs=len(history),
        resumed_from_epoch=resume_epoch,
        train_seconds=round(seconds, 1),
        target_parameters=int(model.target.count_params()),
        num_classes=data.num_classes,
        class_names=list(data.class_names),
        train_examples=data.train_examples,
        validation_freq=config.validation_freq,
        method=config.method,
        sources=[s.name for s in model.sources],
        replicas=strategy.num_replicas_in_sync,
        soft_label_cache_views=cache.views if cache else None,
    )
    _write_results(output_dir, results)
    backup.delete()  # only now: a kill before this point resumes (at worst retraining nothing)
    monitor = saver.monitor
    logging.info("Done: %s %.4f (best %.4f at epoch %s). Results in %s.", monitor, results.get(monitor, float("nan")),
                 results[f"best_{monitor}"] or float("nan"), results["best_epoch"], output_dir)
    if config.export_dir and distribute_lib.is_chief(strategy):
        best = os.path.join(output_dir, "best.keras")
        sources_lib.require_file(best, "The target to export (no epoch had a finite validation accuracy)")
        path = export_lib.export_saved_model(keras.saving.load_model(best, compile=False), config.export_dir,
                                             class_names=data.class_names)
        results["export_path"] = path
        _write_results(output_dir, results)
        logging.info("Exported %s as a SavedModel to %s.", best, path)
    return results


def build_soft_label_cache(config, views, top_k=0, dtype="float16", batch_size=256, examples_per_shard=10_000,
                           overwrite=False):
    """Writes the soft-label cache of ``config`` into ``config.soft_label_cache`` (``tools/cache_soft_labels.py``).

    Args:
        config: the :class:`TrainConfig` of the runs the cache will serve.
        views: number of augmented views K per training image.
        top_k: keep each source's ``top_k`` largest logits only (0: all).
        dtype: ``float16`` or ``float32`` storage.
        batch_size: images per source call.
        examples_per_shard: records per TFRecord file.
        overwrite: replace an existing cache.

    Returns:
        The cache's manifest dict.
    """
    if not config.soft_label_cache:
        raise ConfigError("--soft_label_cache=DIR names the directory to write the cache to.")
    _one_of("mixed_precision", config.mixed_precision, MIXED_PRECISION_POLICIES)
    sources_lib.parse_scale(config.source_scale)
    check_source_flags(config)
    if not [spec for spec in config.sources if spec.strip()]:
        raise ConfigError("--sources is empty: there is nothing to cache.")
    splits = load_splits(config)
    with dtype_policy(config.mixed_precision):
        sources = build_sources(config, splits.image_size)
    return soft_label_cache_lib.write(
        config, splits, sources, os.path.expanduser(config.soft_label_cache), views, top_k=top_k, dtype=dtype,
        batch_size=batch_size, examples_per_shard=examples_per_shard, overwrite=overwrite, verbose=config.verbose,
    )


def export_run(model_dir, export_dir, version=None, checkpoint="best", export_format="saved_model", quantize="none",
               evaluate=True, representative_examples=200):
    """Exports the target of a finished run (``tools/export.py``).

    Args:
        model_dir: the run's ``--model_dir``.
        export_dir: base directory; files go to ``<export_dir>/<version>/``.
        version: positive integer; None = the next free version.
        checkpoint: ``best`` or ``last`` (which ``.keras`` file to export).
        export_format: ``saved_model`` (TF Serving) or ``tflite``
            (``model.tflite`` next to ``tflite_eval.json``).
        quantize: TFLite quantization, see :func:`sskt_tf.export.export_tflite`.
        evaluate: for TFLite, also measure the Keras and the TFLite model's
            accuracy on the run's validation split.
        representative_examples: training images that calibrate int8.

    Returns:
        A dict with ``path`` and, for TFLite with ``evaluate``,
        ``keras_val_accuracy``, ``tflite_val_accuracy`` and ``val_examples``.
    """
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"Unknown --checkpoint={checkpoint}; choose best or last.")
    if export_format not in ("saved_model", "tflite"):
        raise ConfigError(f"Unknown --format={export_format}; choose saved_model or tflite.")
    model_path = os.path.join(model_dir, f"{checkpoint}.keras")
    sources_lib.require_file(model_path, f"The run's {checkpoint} target")
    target = keras.saving.load_model(model_path, compile=False)
    if export_format == "saved_model":
        return {"path": export_lib.export_saved_model(target, export_dir, version, class_names=_class_names(model_dir))}

    needs_data = evaluate or quantize == "int8"
    # Plain pipelines even for a run trained from a soft-label cache: only images are needed.
    run_config = dataclasses.replace(config_from_flagfile(os.path.join(model_dir, "flags.txt")), soft_label_cache="")
    data = load_data(run_config) if needs_data else None
    representative = _first_images(data.train, representative_examples) if quantize == "int8" else None
    output_dir = export_lib.version_dir(export_dir, version)
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = export_lib.export_saved_model(target, scratch, 1)
        os.makedirs(output_dir)
        path = export_lib.export_tflite(saved_model, os.path.join(output_dir, "model.tflite"), quantize, representative)
    result = {"path": path, "quantize": quantize}
    if evaluate:
        classifier = export_lib.TFLiteClassifier(path)
        keras_accuracy, examples = export_lib.accuracy(lambda x: target.predict(x.astype("float32"), verbose=0), data.val)
        tflite_accuracy, _ = export_lib.accuracy(lambda x: classifier(x)["probabilities"], data.val)
        result.update(keras_val_accuracy=keras_accuracy, tflite_val_accuracy=tflite_accuracy, val_examples=examples)
        with open(os.path.join(output_dir, "tflite_eval.json"), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return result


def _class_names(model_dir):
    """The class names a finished run recorded in ``results.json`` (None if it has none)."""
    path = os.path.join(model_dir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("class_names")


def _first_images(batches, count):
    """The first ``count`` images of an ``(images, labels)`` batch dataset, as one array."""
    collected, total = [], 0
    for images, _ in batches.as_numpy_iterator():
        collected.append(images)
        total += len(images)
        if total >= count:
            break
    if not collected:
        raise ConfigError("No training batch to calibrate int8 on: the training set is smaller than --batch_size.")
    return np.concatenate(collected)[:count]
