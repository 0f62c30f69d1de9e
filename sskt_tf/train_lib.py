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

from sskt_tf import callbacks as callbacks_lib
from sskt_tf import data as data_lib
from sskt_tf import heads as heads_lib
from sskt_tf import losses as losses_lib
from sskt_tf import sources as sources_lib
from sskt_tf import targets as targets_lib
from sskt_tf.config import TrainConfig, to_flagfile
from sskt_tf.errors import ConfigError
from sskt_tf.model import SSKTModel


def _default_model_dir(config):
    dataset = config.dataset.replace(os.sep, "_").replace(":", "_")
    return os.path.join("runs", f"{dataset}-{config.target}-{time.strftime('%Y%m%d-%H%M%S')}")


def _one_of(flag, value, choices):
    if value not in choices:
        raise ConfigError(f"Unknown --{flag}={value}; choose one of {', '.join(choices)}.")


def _check(config):
    """Rejects inconsistent settings before any data is loaded."""
    _one_of("target", config.target, targets_lib.TARGETS)
    _one_of("head", config.head, heads_lib.HEAD_KINDS)
    _one_of("aux_loss", config.aux_loss, losses_lib.AUX_LOSSES)
    _one_of("target_loss", config.target_loss, losses_lib.TARGET_LOSSES)
    for spec in config.sources:
        sources_lib.check_spec(spec, places365_weights=config.places365_weights.lower())
    sources_lib.parse_scale(config.source_scale)
    for flag, default in (("source_weights", "imagenet"), ("places365_weights", "places365")):
        value = getattr(config, flag)
        if value.lower() not in (default, "none"):
            sources_lib.require_file(os.path.expanduser(value), f"--{flag} file")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("--epochs and --batch_size must be positive.")
    if config.lr <= 0 or config.temperature <= 0:
        raise ConfigError("--lr and --temperature must be positive.")
    if config.alpha < 0 or config.weight_decay < 0 or config.lr_decay <= 0:
        raise ConfigError("--alpha and --weight_decay must be >= 0 and --lr_decay > 0.")
    if any(m < 0 for m in config.lr_milestones):
        raise ConfigError(f"--lr_milestones must be epoch numbers >= 0, got {config.lr_milestones}.")
    if config.target_loss == "bce":
        raise ConfigError("--target_loss=bce needs multi-hot labels, which none of the supported datasets provide yet.")


def _seed(config):
    if config.seed >= 0:
        keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def build_sources(config, image_size):
    """The frozen sources named by ``config.sources``.

    Args:
        config: a :class:`TrainConfig`.
        image_size: the target's image side length.

    Returns:
        A list of :class:`sskt_tf.sources.Source`.
    """
    def weights(value, keyword):
        """The flag's value as the builders take it: None, the lower-case keyword, or a path."""
        return {"none": None, keyword: keyword}.get(value.lower(), os.path.expanduser(value))

    scale = sources_lib.parse_scale(config.source_scale)
    built = [
        sources_lib.from_spec(
            spec, image_size, scale=scale, source_image_size=config.source_image_size or None,
            weights=weights(config.source_weights, "imagenet"),
            places365_weights=weights(config.places365_weights, "places365"),
        )
        for spec in config.sources if spec.strip()
    ]
    for source in built:
        logging.info("Source %s: %d classes at %s input.", source.name, source.num_classes, source.output_size((image_size, image_size)))
    return built


def build_model(config, data):
    """The SSKTModel for ``config`` on ``data`` (target + sources + heads).

    Args:
        config: a :class:`TrainConfig`.
        data: the :class:`sskt_tf.data.Data` it will train on.

    Returns:
        An uncompiled :class:`SSKTModel`.
    """
    if config.num_classes and config.num_classes != data.num_classes:
        raise ConfigError(
            f"--num_classes={config.num_classes} but {config.dataset} has {data.num_classes} classes; "
            "leave --num_classes at 0 to use the dataset's."
        )
    target = targets_lib.get(config.target, data.num_classes, image_size=data.image_size, mean=data.mean, std=data.std)
    return SSKTModel(target, build_sources(config, data.image_size), head=config.head, feature_layers=config.feature_layers or None)


def compile_model(model, config):
    """Compiles ``model`` with the SGD, losses and metrics of ``config``."""
    optimizer = keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    model.compile(
        optimizer=optimizer,
        loss=config.target_loss,
        aux_loss=config.aux_loss,
        alpha=config.alpha,
        temperature=config.temperature,
        weight_decay=config.weight_decay,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )


def _callbacks(config, model_dir):
    nan_guard = callbacks_lib.StopOnNonFiniteLoss()
    saver = callbacks_lib.SaveTarget(model_dir)
    return nan_guard, saver, [
        nan_guard,
        keras.callbacks.LearningRateScheduler(callbacks_lib.step_schedule(config.lr, config.lr_milestones, config.lr_decay)),
        keras.callbacks.CSVLogger(os.path.join(model_dir, "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=os.path.join(model_dir, "tensorboard")),
        saver,
    ]


def _write_results(model_dir, results):
    with open(os.path.join(model_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


def train(config):
    """Trains SSKT (or the scratch baseline) as ``config`` says.

    Writes to ``config.model_dir``: ``flags.txt`` (a flagfile that reproduces
    the run), ``history.csv``, TensorBoard events under ``tensorboard/``,
    ``best.keras``/``last.keras`` (target only) and ``results.json``.

    Args:
        config: a :class:`sskt_tf.config.TrainConfig`.

    Returns:
        The results dict written to ``results.json`` (final ``val_*`` metrics
        under Keras' names, ``best_val_accuracy``, ``best_epoch``, ...).

    Raises:
        ConfigError: bad settings, missing data or weights.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    config = dataclasses.replace(config)
    _check(config)
    config.model_dir = config.model_dir or _default_model_dir(config)
    os.makedirs(config.model_dir, exist_ok=True)
    with open(os.path.join(config.model_dir, "flags.txt"), "w") as f:
        f.write(to_flagfile(config))
    _seed(config)

    data = data_lib.load(
        config.dataset, config.batch_size, data_dir=config.data_dir or None, image_size=config.image_size or None,
        seed=config.seed if config.seed >= 0 else None, augment=config.augment, download=config.download, cache=config.cache,
    )
    if data.train_examples is not None and data.train_examples < config.batch_size:
        raise ConfigError(
            f"--batch_size={config.batch_size} is larger than the {data.train_examples} training examples "
            "(training drops partial batches, so no step would run): lower --batch_size."
        )
    model = build_model(config, data)
    compile_model(model, config)
    logging.info(
        "Training %s (%d parameters) on %s (%d classes, %sx%s) with %d source(s) for %d epochs in %s.",
        model.target.name, model.target.count_params(), config.dataset, data.num_classes, data.image_size,
        data.image_size, len(model.sources), config.epochs, config.model_dir,
    )
    nan_guard, saver, callbacks = _callbacks(config, config.model_dir)
    start = time.time()
    with warnings.catch_warnings():
        if not config.steps_per_epoch:
            # Keras warns "Your input ran out of data; interrupting training" at the end of
            # the first pass over any dataset of unknown length (folder datasets, which skip
            # corrupt files) and then trains every epoch anyway.
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(
            data.train, validation_data=data.val, epochs=config.epochs, steps_per_epoch=config.steps_per_epoch or None,
            callbacks=callbacks, verbose=config.verbose, shuffle=False,  # the pipeline shuffles
        )
    seconds = time.time() - start
    nan_guard.raise_if_failed(config.model_dir)
    # The last epoch's metrics; its val_* are the final weights evaluated on the validation split.
    results = {k: float(v[-1]) for k, v in history.history.items() if v}
    results.update(
        best_val_accuracy=saver.best if math.isfinite(saver.best) else None,
        best_epoch=None if saver.best_epoch is None else saver.best_epoch + 1,
        epochs=len(history.epoch),
        train_seconds=round(seconds, 1),
        target_parameters=int(model.target.count_params()),
        num_classes=data.num_classes,
        sources=[s.name for s in model.sources],
    )
    _write_results(config.model_dir, results)
    logging.info("Done: val_accuracy %.4f (best %.4f at epoch %s). Results in %s.",
                 results["val_accuracy"], results["best_val_accuracy"] or float("nan"), results["best_epoch"], config.model_dir)
    return results
