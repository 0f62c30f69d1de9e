"""A run's data from its configuration: the dataset, its subset, the soft-label cache, epoch lengths."""

from sskt_tf import data as data_lib
from sskt_tf import soft_labels
from sskt_tf.errors import ConfigError


def data_subset(config):
    """The :class:`sskt_tf.data.Subset` (classes, examples per class) of ``config``."""
    return data_lib.Subset(
        classes=tuple(config.classes), examples_per_class=config.train_examples_per_class, seed=config.subset_seed
    )


def unlabeled_images(config):
    """The :class:`sskt_tf.data.UnlabeledImages` of ``config`` (inactive without the flags)."""
    return data_lib.UnlabeledImages(
        dataset=config.unlabeled_dataset, from_rest=config.unlabeled_from_rest, ratio=config.unlabeled_ratio
    )


def validation_epochs(epochs, validation_freq):
    """The 1-based epochs that validate: every ``validation_freq``-th, and always the last.

    Args:
        epochs: the run's number of epochs.
        validation_freq: N of ``--validation_freq``.

    Returns:
        A sorted list of epoch numbers (Keras' ``fit(validation_freq=...)`` takes it).
    """
    return [epoch for epoch in range(1, epochs + 1) if epoch % validation_freq == 0 or epoch == epochs]


def monitored_metric(data):
    """The validation metric that picks ``best.keras``: ``val_mAP`` (multi-label) or ``val_accuracy``."""
    return "val_mAP" if data.multi_label else "val_accuracy"


def load_splits(config, order_seed=None):
    """The :class:`sskt_tf.data.Splits` (unbatched examples) of ``config.dataset``."""
    if order_seed is None and config.seed >= 0:
        order_seed = config.seed
    return data_lib.load_splits(
        config.dataset,
        data_dir=config.data_dir or None,
        image_size=config.image_size or None,
        download=config.download,
        order_seed=order_seed,
        subset=data_subset(config),
        unlabeled=unlabeled_images(config),
    )


def load_data(config, cache=None, start_epoch=0):
    """The :class:`sskt_tf.data.Data` (train and validation pipelines) of ``config``.

    Args:
        config: a :class:`TrainConfig`.
        cache: the run's :class:`sskt_tf.soft_labels.SoftLabelCache`
            (:func:`sskt_tf.soft_labels.open_cache`), or None.
        start_epoch: the first epoch to train (a resumed run's): the training
            batches start with that epoch's.

    Returns:
        A :class:`sskt_tf.data.Data`. Image training batches cover every
        remaining epoch (with ``--cache``; :func:`sskt_tf.data.keyed_train_pipeline`),
        and with ``--soft_label_cache`` they carry the cached soft labels.
    """
    seed = config.seed if config.seed >= 0 else None
    if data_lib.is_video_dataset(config.dataset, config.data_dir or None):
        return data_lib.load_video(
            config.dataset,
            config.batch_size,
            clip_length=config.clip_length,
            image_size=config.image_size or None,
            short_side=config.video_short_side,
            split=config.video_split or None,
            data_dir=config.data_dir or None,
            seed=seed,
            augment=config.augment,
            download=config.download,
            subset=data_subset(config),
        )
    if config.video_split:
        raise ConfigError(f"--video_split is for video datasets (video_folder:PATH); {config.dataset} holds images.")
    unlabeled = unlabeled_images(config)
    # A cache's views were drawn in its own order of the examples.
    splits = load_splits(config, order_seed=cache.settings["seed"] if cache else None)
    if cache is not None:
        return soft_labels.cached_data(
            config,
            cache,
            splits,
            unlabeled,
            start_epoch,
            epoch_length=lambda examples: epoch_steps(config, examples, one_pass_at_most=True),
        )
    examples = splits.info["train_examples"]
    return data_lib.pipelines(
        splits,
        config.batch_size,
        seed=seed,
        augment=config.augment,
        cache=config.cache,
        epochs=config.epochs,
        start_epoch=start_epoch,
        steps_per_epoch=epoch_steps(config, examples) if examples else None,
        unlabeled=unlabeled,
    )


def epoch_steps(config, labelled_examples, one_pass_at_most=False):
    """The run's one rule for an epoch's length in batches: ``--steps_per_epoch``, else one pass.

    Args:
        config: a :class:`TrainConfig`.
        labelled_examples: the labelled training examples an epoch passes over.
        one_pass_at_most: cap ``--steps_per_epoch`` at one pass (a soft-label cache holds
            one view of each example an epoch).

    Returns:
        The number of batches (drop-remainder) of one epoch.

    Raises:
        ConfigError: a cache with fewer labelled examples than one batch.
    """
    full = labelled_examples // config.batch_size
    if not one_pass_at_most:
        return config.steps_per_epoch or full
    if full == 0:
        raise ConfigError(
            f"--batch_size={config.batch_size} is larger than the {labelled_examples} cached labelled "
            "training examples."
        )
    return min(config.steps_per_epoch, full) if config.steps_per_epoch else full


def epoch_batches(config, data):
    """The training batches ``fit`` iterates and the number of steps of one epoch.

    Every epoch gets an explicit length: the one of a pipeline that covers every
    epoch (epoch-keyed images, cached soft labels), ``--steps_per_epoch``, or one
    pass over the training examples when the dataset's length is unknown to
    tf.data (folder datasets, which skip unreadable files; class subsets). Keras
    3.15 counts a phantom step at the end of every epoch of a dataset of unknown
    length: it adds one batch to the epoch's metric counts (and one to
    ``optimizer.iterations``) without its values, so the epoch's training loss and
    accuracy come out too low by one batch in ``steps + 1`` (the weights are
    unaffected). A one-epoch dataset (``--nocache``, videos) is repeated, so an
    epoch never runs out early: with an unreadable file skipped, it takes its last
    examples from the next pass.

    Args:
        config: a :class:`TrainConfig`.
        data: the run's :class:`sskt_tf.data.Data`.

    Returns:
        ``(dataset, steps_per_epoch)``; ``steps_per_epoch`` is None when the
        dataset's length is known (Keras then counts it itself).
    """
    if data.steps_per_epoch:
        # One dataset holds every remaining epoch: fit must know the epoch length.
        return data.train, data.steps_per_epoch
    if not config.steps_per_epoch and (int(data.train.cardinality()) >= 0 or not data.train_examples):
        return data.train, None
    return data.train.repeat(), epoch_steps(config, data.train_examples or 0)
