"""The training loop behind ``tools/train.py``: one function, :func:`train`."""

import dataclasses
import json
import logging
import math
import os
import time
import warnings

import keras
import tensorflow as tf

from sskt_tf import methods as methods_lib
from sskt_tf import soft_labels
from sskt_tf.errors import ConfigError
from sskt_tf.sources.files import load_keras_file
from sskt_tf.sources.flags import check_source_flags
from sskt_tf.training import backup as backup_lib
from sskt_tf.training import callbacks as callbacks_lib
from sskt_tf.training import distribute as distribute_lib
from sskt_tf.training import history as history_lib
from sskt_tf.training.checks import check_data, validate
from sskt_tf.training.config import resume_flags
from sskt_tf.training.export import export_saved_model
from sskt_tf.training.flags import config_from_flagfile, to_flagfile
from sskt_tf.training.metrics import video_accuracy
from sskt_tf.training.precision import dtype_policy
from sskt_tf.training.pretrained import start_from
from sskt_tf.training.run_data import (
    epoch_batches,
    load_data,
    monitored_metric,
    unlabeled_images,
    validation_epochs,
)


def _default_model_dir(config):
    dataset = config.dataset.replace(os.sep, "_").replace(":", "_")
    return os.path.join("runs", f"{dataset}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}")


def _seed(config):
    if config.seed >= 0:
        keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def build_model(config, data, method=None):
    """The model of ``config.method`` on ``data`` (e.g. SSKT: target + sources + heads).

    Args:
        config: a validated :class:`TrainConfig`.
        data: the :class:`sskt_tf.data.Data` it will train on (from a soft-label
            cache, its placeholders stand for the sources, which are not built).
        method: the :class:`sskt_tf.methods.Method` of ``config.method`` (looked up when None).

    Returns:
        An uncompiled ``keras.Model`` whose ``target`` attribute is the network
        that is saved and exported.
    """
    model = (method or methods_lib.get(config.method)).build(config, data)
    if config.pretrained:
        start_from(model.target_networks, config.pretrained, config.train_from)
    return model


def compile_model(model, config, multi_label=False, method=None):
    """Compiles ``model`` with the SGD, losses and metrics of ``config``.

    Multi-label data gets no compiled metric: its mAP needs the whole
    validation set (:class:`sskt_tf.training.callbacks.MeanAveragePrecision`).
    ``method`` is the :class:`sskt_tf.methods.Method` of ``config.method`` (looked up when None).
    """
    optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    model.compile(
        optimizer=optimizer,
        loss=config.target_loss,
        weight_decay=config.weight_decay,
        # Weighted, so that the zero weights of unlabelled examples leave them out of the accuracy.
        weighted_metrics=[] if multi_label else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
        labelled_fraction=unlabeled_images(config).labelled_fraction(config.batch_size),
        **(method or methods_lib.get(config.method)).compile_kwargs(config),
    )


def _callbacks(config, data, output_dir, backup, resume_epoch):
    nan_guard = callbacks_lib.StopOnNonFiniteLoss()
    saver = callbacks_lib.SaveTarget(output_dir, monitor=monitored_metric(data), resume_epoch=resume_epoch)
    # First: the callbacks after it read the mAP from the epoch's logs.
    mean_ap = (
        [
            callbacks_lib.MeanAveragePrecision(
                data.val,
                output_path=os.path.join(output_dir, "val_ap.json"),
                class_names=data.class_names,
                validation_epochs=validation_epochs(config.epochs, config.validation_freq),
            )
        ]
        if data.multi_label
        else []
    )
    # First of all: the callbacks after it see a resumed epoch's whole-epoch training metrics.
    resumed_logs = [backup.resumed_epoch_logs] if backup.resumed_epoch_logs else []
    return (
        nan_guard,
        saver,
        resumed_logs
        + mean_ap
        + [
            nan_guard,
            callbacks_lib.learning_rate_callback(config, os.path.join(output_dir, "history.csv"), resume_epoch),
            history_lib.HistoryLogger(os.path.join(output_dir, "history.csv")),
            callbacks_lib.EpochTensorBoard(log_dir=os.path.join(output_dir, "tensorboard")),
            saver,
            # Last: an epoch counts as done once the history row and checkpoints are written.
            backup,
        ],
    )


def _output_dir(model_dir, strategy):
    """``model_dir`` for the chief; ``model_dir/worker_<i>`` for the other workers."""
    if distribute_lib.is_chief(strategy):
        return model_dir
    task_type, task_id = distribute_lib.worker_id(strategy)
    return os.path.join(model_dir, f"{task_type}_{task_id}")


# What a run writes in its --model_dir (besides flags.txt, written first).
_RUN_FILES = (
    "best.keras",
    "last.keras",
    "best.json",
    "history.csv",
    "results.json",
    "subset.json",
    "val_ap.json",
    "backup",
    "tensorboard",
)


def _prepare_resume(config, output_dir, backup_dir, strategy=None):
    """Returns the :class:`~sskt_tf.training.backup.Position` the run resumes from, and makes
    ``history.csv`` and the backups agree with it.

    Under multi-worker training every worker resumes from the newest backup that all of
    them hold (:func:`sskt_tf.training.backup.agree_on_position`); newer ones are deleted.

    Raises:
        ConfigError: ``output_dir`` holds a finished run (``results.json``, no
            backup), a backup of different networks, or files a run writes
            without the ``flags.txt`` of one (someone else's); the workers hold no
            common backup.
    """
    held = backup_lib.held_positions(backup_dir)
    resume = backup_lib.agree_on_position(
        backup_lib.gather_held_positions(strategy or tf.distribute.get_strategy(), held)
    )
    flags_file = os.path.join(output_dir, "flags.txt")
    ours = [name for name in _RUN_FILES if os.path.exists(os.path.join(output_dir, name))]
    if ours and not os.path.exists(flags_file):
        raise ConfigError(
            f"--model_dir={output_dir} holds {', '.join(ours)} but no flags.txt: not a run of this tool, and a run "
            "would overwrite them. Use a new or empty --model_dir."
        )
    if resume == backup_lib.START and os.path.exists(os.path.join(output_dir, "results.json")):
        raise ConfigError(
            f"{output_dir} holds a finished run (results.json); use another --model_dir, or delete it to train again."
        )
    if resume != backup_lib.START and os.path.exists(flags_file):
        previous = config_from_flagfile(flags_file)
        changed = [f"--{name}" for name in resume_flags() if getattr(previous, name) != getattr(config, name)]
        if changed:
            raise ConfigError(
                f"{output_dir} holds a backup of a run with other {', '.join(changed)}; resume it with its own "
                f"flags (--flagfile={flags_file}), or use another --model_dir."
            )
    # Rows of epochs the backup does not cover (the kill came after the history row but
    # before the backup) are trained again, so drop them: every epoch appears exactly once.
    history_lib.truncate_history(os.path.join(output_dir, "history.csv"), resume.epoch)
    if held and held[0] > resume:
        logging.warning(
            "This worker holds a backup at %s, but another worker's newest is at %s: every worker resumes from %s.",
            held[0],
            resume,
            resume,
        )
        backup_lib.discard_after(backup_dir, resume)
    if resume.step:
        logging.info("Resuming from the backup in %s after epoch %d and %d steps of the next.", backup_dir, *resume)
    elif resume.epoch:
        logging.info("Resuming from the backup in %s after epoch %d.", backup_dir, resume.epoch)
    return resume


def train(config):
    """Trains the target with ``config.method`` (SSKT or a baseline) as ``config`` says.

    Writes to ``config.model_dir``: ``flags.txt`` (a flagfile that reproduces
    the run), ``history.csv``, TensorBoard events under ``tensorboard/``,
    ``best.keras``/``last.keras`` (target only), ``results.json``, and while
    training ``backup/`` (weights, optimizer state and position, removed at the
    end; :mod:`sskt_tf.training.backup`). A run that was killed resumes from
    its last backup when called again with the same ``model_dir``. Under multi-worker training the
    chief writes there and every other worker into ``model_dir/worker_<i>/``.
    With ``config.export_dir``, ``best.keras`` is exported as a SavedModel.

    Args:
        config: a :class:`sskt_tf.training.config.TrainConfig`.

    Returns:
        The results dict written to ``results.json`` (final ``val_*`` metrics
        under Keras' names, ``best_val_accuracy`` (``best_val_mAP`` on
        multi-label data), ``best_epoch``, ``method``, ...).

    Raises:
        ConfigError: bad settings, missing data or weights.
        TrainingDivergedError: the loss became NaN or infinite.
        Preempted: SIGTERM or SIGINT arrived; a backup was written (calling again resumes there).
    """
    config = validate(config)
    method = methods_lib.get(config.method)
    strategy = _strategy(config)
    if method.uses_sources and not config.soft_label_cache:
        check_source_flags(config, inspect=True)  # loads .keras sources: only once the strategy exists
    config = dataclasses.replace(config, model_dir=config.model_dir or _default_model_dir(config))
    output_dir, resume = _prepare_run_directory(config, strategy)
    _seed(config)
    cache = soft_labels.open_cache(config)
    data = load_data(config, cache, start_epoch=resume.epoch)
    check_data(config, data, method)
    _check_backup_positions(config, data, resume)
    if data.subset:
        with open(os.path.join(output_dir, "subset.json"), "w") as f:
            json.dump(data.subset, f)
    with strategy.scope(), dtype_policy(config.mixed_precision):
        model = build_model(config, data, method)
        compile_model(model, config, multi_label=data.multi_label, method=method)
    _log_start(config, data, model, strategy, output_dir)
    with backup_lib.stop_signals_request_stop() as stop_requested:
        backup = _backup(config, data, output_dir, resume, stop_requested)
        nan_guard, saver, callbacks = _callbacks(config, data, output_dir, backup, resume.epoch)
        seconds = _fit(config, model, data, callbacks, resume)
    nan_guard.raise_if_failed(output_dir)
    results = _results(config, data, model, saver, output_dir, resume, seconds, strategy, cache)
    if config.export_dir and distribute_lib.is_chief(strategy):
        results["export_path"] = _export_best(output_dir, config.export_dir, data.class_names)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    backup.delete()  # only now: a kill before this point resumes (at worst retraining nothing)
    logging.info(
        "Done: %s %.4f (best %.4f at epoch %s). Results in %s.",
        saver.monitor,
        results.get(saver.monitor, float("nan")),
        results[f"best_{saver.monitor}"] or float("nan"),
        results["best_epoch"],
        output_dir,
    )
    return results


def _strategy(config):
    """The run's tf.distribute strategy; multi-worker runs need a fixed directory and seed."""
    # Multi-worker strategies must exist before any other TensorFlow work.
    strategy = distribute_lib.get_strategy(config.distribution_strategy, config.tpu)
    if distribute_lib.is_multi_worker(strategy) and (not config.model_dir or config.seed < 0):
        raise ConfigError(
            "Multi-worker training needs an explicit --model_dir (the default name holds each worker's start "
            "time) and --seed >= 0 (every worker must shuffle the data the same way)."
        )
    return strategy


def _prepare_run_directory(config, strategy):
    """Creates this process's output directory, finds the epoch to resume from, writes ``flags.txt``.

    Returns:
        ``(output_dir, resume)``: ``resume`` is a :class:`~sskt_tf.training.backup.Position`.
    """
    output_dir = _output_dir(config.model_dir, strategy)
    os.makedirs(output_dir, exist_ok=True)
    resume = _prepare_resume(config, output_dir, os.path.join(output_dir, "backup"), strategy)
    with open(os.path.join(output_dir, "flags.txt"), "w") as f:
        f.write(to_flagfile(config))
    return output_dir, resume


def _log_start(config, data, model, strategy, output_dir):
    logging.info(
        "Training %s with %s (%d parameters) on %s (%d classes, %s%sx%s) with %d source(s) for %d epochs on %d "
        "replica(s) in %s.",
        model.target.name,
        config.method,
        model.target.count_params(),
        config.dataset,
        data.num_classes,
        f"{data.frames} frames of " if data.frames else "",
        data.image_size,
        data.image_size,
        len(model.sources),
        config.epochs,
        strategy.num_replicas_in_sync,
        output_dir,
    )


def _check_backup_positions(config, data, resume):
    """Within-epoch backups and resumes need batches that depend only on the position.

    Raises:
        ConfigError: ``--backup_every_steps``, or a backup taken within an epoch, with
            training batches that are not epoch-keyed, or a backup past this run's epoch length.
    """
    if data.steps_per_epoch and resume.step < data.steps_per_epoch:
        return
    if resume.step:
        raise ConfigError(
            f"The backup in {config.model_dir} stopped after {resume.step} steps of epoch {resume.epoch + 1}, but this "
            f"run's epochs have {data.steps_per_epoch or 'an unknown number of'} steps with epoch-keyed batches "
            "(within-epoch resumes need --cache and an image dataset of known size, and the flags of the run)."
        )
    if config.backup_every_steps:
        raise ConfigError(
            "--backup_every_steps needs training batches that depend only on the epoch and step: image datasets "
            "with --cache (the default) whose size is known. Back up at epoch ends (--backup_every_steps=0) here."
        )


def _backup(config, data, output_dir, resume, stop_requested):
    """The run's :class:`~sskt_tf.training.backup.FiniteBackupAndRestore`, restoring ``resume``."""
    resumed_logs = None
    backup_dir = os.path.join(output_dir, "backup")
    if resume.step:
        saved = backup_lib.read_metadata(backup_dir, resume)
        resumed_logs = backup_lib.ResumedEpochLogs(resume.epoch, resume.step, saved["train_logs"])
    return backup_lib.FiniteBackupAndRestore(
        backup_dir,
        resume,
        every_steps=config.backup_every_steps,
        steps_per_epoch=data.steps_per_epoch,
        stop_requested=stop_requested,
        resumed_epoch_logs=resumed_logs,
    )


def _fit(config, model, data, callbacks, resume):
    """Runs ``model.fit`` over the steps left after ``resume``; returns its seconds.

    A run resumed within an epoch calls ``fit`` twice: for the rest of that epoch, then for
    the epochs after it (``fit`` cannot start an epoch at a later step).
    """
    train_batches, steps_per_epoch = epoch_batches(config, data)
    # (batches, first epoch, end epoch, steps of each epoch) of each fit call.
    if resume.step:
        fits = [(train_batches.skip(resume.step), resume.epoch, resume.epoch + 1, steps_per_epoch - resume.step)]
        if resume.epoch + 1 < config.epochs:
            fits.append((data.batches_from_epoch(resume.epoch + 1), resume.epoch + 1, config.epochs, steps_per_epoch))
    else:
        # A run killed after its last backup but before results.json has nothing left to
        # train (and from a cache, no batches left to build the model from).
        fits = [(train_batches, resume.epoch, config.epochs, steps_per_epoch)] if resume.epoch < config.epochs else []
    start = time.time()
    with warnings.catch_warnings(), soft_labels.mismatch_as_config_error(config):
        # Keras warns "Your input ran out of data; interrupting training" at the end of the
        # first pass over any dataset of unknown length (folder validation data) and then
        # goes on as it should.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        for batches, first_epoch, end_epoch, steps in fits:
            model.fit(
                batches,
                validation_data=data.val,
                initial_epoch=first_epoch,
                epochs=end_epoch,
                steps_per_epoch=steps,
                validation_freq=validation_epochs(config.epochs, config.validation_freq),
                callbacks=callbacks,
                verbose=config.verbose,
                shuffle=False,  # the pipeline shuffles
            )
    return time.time() - start


def _results(config, data, model, saver, output_dir, resume, seconds, strategy, cache):
    """What ``results.json`` holds: the last epoch's metrics, the best epoch, what was trained, and
    a video dataset's video accuracy."""
    # The last epoch's metrics (its val_* are the final weights on the validation split),
    # from history.csv, which holds every epoch of a resumed run too.
    history = history_lib.read_history(os.path.join(output_dir, "history.csv"))
    results = history_lib.history_values(history[-1]) if history else {}
    results.update(
        **{f"best_{saver.monitor}": saver.best if math.isfinite(saver.best) else None},
        best_epoch=None if saver.best_epoch is None else saver.best_epoch + 1,
        epochs=len(history),
        resumed_from_epoch=resume.epoch,
        resumed_from_step=resume.step,
        train_seconds=round(seconds, 1),
        target_parameters=int(model.target.count_params()),
        num_classes=data.num_classes,
        class_names=list(data.class_names),
        train_examples=data.train_examples,
        unlabeled_examples=data.unlabeled_examples,
        unlabeled_per_batch=data.unlabeled_per_batch,
        validation_freq=config.validation_freq,
        method=config.method,
        sources=[s.name for s in model.sources],
        replicas=strategy.num_replicas_in_sync,
        soft_label_cache_views=cache.views if cache else None,
    )
    if data.video_test is not None:
        results.update(_video_test(output_dir, data))
    return results


def _video_test(output_dir, data):
    """Video accuracy (and every clip's accuracy) of ``best.keras`` on the validation videos."""
    best = os.path.join(output_dir, "best.keras")
    if not os.path.exists(best):
        return {"video_accuracy": None, "all_clips_accuracy": None}
    target = load_keras_file(best, "The run's best target")
    scores = video_accuracy(lambda clips: target(clips, training=False), data.video_test)
    logging.info(
        "best.keras on %d validation videos (%d clips): video accuracy %.4f, clip accuracy %.4f.",
        scores["videos"],
        scores["clips"],
        scores["video_accuracy"] or float("nan"),
        scores["all_clips_accuracy"] or float("nan"),
    )
    return {name: scores[name] for name in ("video_accuracy", "all_clips_accuracy")}


def _export_best(output_dir, export_dir, class_names):
    """Exports the run's ``best.keras`` as a SavedModel; returns the version directory."""
    best = os.path.join(output_dir, "best.keras")
    target = load_keras_file(best, "The target to export (no epoch had a finite validation accuracy)")
    path = export_saved_model(target, export_dir, class_names=class_names)
    logging.info("Exported %s as a SavedModel to %s.", best, path)
    return path
