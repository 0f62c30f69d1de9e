"""Checks of a run's configuration, before and after its data is loaded."""

import dataclasses
import os

from sskt_tf import methods as methods_lib
from sskt_tf import soft_labels
from sskt_tf import targets as targets_lib
from sskt_tf.data import is_video_dataset, kinds
from sskt_tf.errors import ConfigError
from sskt_tf.sources import parse_scale
from sskt_tf.training import availability, ranges
from sskt_tf.training import config as config_lib
from sskt_tf.training.run_data import data_subset, unlabeled_images


def validate(config, building_cache=False):
    """The one check of a configuration, before any data is loaded; fills in the method's defaults.

    Training, the soft-label cache builder and the tools call it first.

    Args:
        config: a :class:`sskt_tf.TrainConfig`.
        building_cache: the soft-label cache builder's configuration (its ``--soft_label_cache``
            is the directory it writes; see :func:`sskt_tf.training.availability.missing_items`).

    Returns:
        A copy of ``config`` whose unset flags (None) the method gives a value
        (:attr:`sskt_tf.methods.Method.defaults`) hold that value.

    Raises:
        ConfigError: naming the flag and what it accepts.
    """
    method = methods_lib.get(config.method)
    config = dataclasses.replace(
        config, **{name: value for name, value in method.defaults.items() if getattr(config, name) is None}
    )
    ranges.check(config)
    for item in dataclasses.fields(config):
        accepted = config_lib.choices(item.name)  # the field's declared choices (registries included)
        if accepted is not None and getattr(config, item.name) not in accepted:
            raise ConfigError(
                f"Unknown --{item.name}={getattr(config, item.name)}; choose one of {', '.join(accepted)}."
            )
    if config.lr_warmup_epochs and config.lr_schedule != "step":
        raise ConfigError(
            f"--lr_warmup_epochs={config.lr_warmup_epochs} ramps up the step schedule; "
            f"--lr_schedule={config.lr_schedule} sets its own rates: drop --lr_warmup_epochs or use --lr_schedule=step."
        )
    parse_scale(config.source_scale)
    soft_labels.check_config(config, method)
    _check_unlabeled(config, method)
    _check_paths(config)
    if config.train_from and not config.pretrained:
        raise ConfigError(f"--train_from={config.train_from} freezes pretrained layers: pass --pretrained too.")
    data_subset(config).check()
    method.check(config)
    availability.check_available(config, building_cache=building_cache)  # every missing item at once
    return config


def _check_unlabeled(config, method):
    """Unlabelled images need a method that learns from them, integer labels and epoch-keyed image batches."""
    unlabeled = unlabeled_images(config)
    if not unlabeled.active:
        return
    if not method.uses_unlabeled:
        users = ", ".join(name for name in methods_lib.names() if methods_lib.get(name).uses_unlabeled)
        raise ConfigError(
            f"--method={config.method} has no loss that learns from unlabelled images (--unlabeled_dataset, "
            f"--unlabeled_from_rest); methods that do: {users}."
        )
    unlabeled.check(config.train_examples_per_class)
    if not config.cache:
        raise ConfigError("Unlabelled images need epoch-keyed batches, which --nocache turns off: keep --cache.")
    if config.target_loss == "bce":
        raise ConfigError("Unlabelled images are for single-label datasets; --target_loss=bce trains label vectors.")
    if is_video_dataset(config.dataset, config.data_dir or None):
        raise ConfigError("Unlabelled images are for image datasets; video datasets cannot take them.")


def _check_paths(config):
    """Directories the run writes must be directories; the dataset's kind checks its value (a bare directory)."""
    for flag in ("model_dir", "export_dir"):
        path = os.path.expanduser(getattr(config, flag))
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"--{flag}={getattr(config, flag)} is a file; the run needs a directory there.")
    kind, location = kinds.resolve(config.dataset)
    kind.check(location)


def check_data(config, data, method=None):
    """The loaded data must suit the configuration: class count, batch size, label kind.

    Args:
        config: a validated :class:`sskt_tf.TrainConfig`.
        data: its :class:`sskt_tf.data.Data`.
        method: the :class:`sskt_tf.methods.Method` of ``config.method`` (looked up when None).

    Raises:
        ConfigError: saying which flag to change.
    """
    if config.num_classes and config.num_classes != data.num_classes:
        raise ConfigError(
            f"--num_classes={config.num_classes} but {config.dataset} has {data.num_classes} classes; "
            "leave --num_classes at 0 to use the dataset's."
        )
    if data.train_examples is not None and data.train_examples < config.batch_size:
        raise ConfigError(
            f"--batch_size={config.batch_size} is larger than the {data.train_examples} training examples "
            "(training drops partial batches, so no step would run): lower --batch_size."
        )
    _check_labels(config, data, method or methods_lib.get(config.method))
    video_target = targets_lib.is_video(config.target)
    if video_target != (data.frames is not None):
        raise ConfigError(
            f"--target={config.target} takes {'clips' if video_target else 'images'}, but {config.dataset} holds "
            f"{'videos' if data.frames else 'images'}: use "
            + (
                f"a video target ({', '.join(targets_lib.names(takes_clips=True))})."
                if data.frames
                else "a video dataset (ucf101/ucf101_1, video_folder:PATH) or an image target."
            )
        )


def _check_labels(config, data, method):
    """The target loss and the method must suit the dataset's labels (single or multi-label)."""
    if data.multi_label and config.target_loss != "bce":
        raise ConfigError(f"{config.dataset} is multi-label (multi-hot labels): use --target_loss=bce.")
    if not data.multi_label and config.target_loss == "bce":
        raise ConfigError(
            f"--target_loss=bce needs multi-hot labels; {config.dataset} has one label an image: "
            "use --target_loss=ce or focal."
        )
    if data.multi_label and not method.multi_label:
        raise ConfigError(
            f"--method={config.method} trains single-label classifiers; {config.dataset} is multi-label "
            f"(methods for it: {', '.join(n for n in methods_lib.names() if methods_lib.get(n).multi_label)})."
        )
