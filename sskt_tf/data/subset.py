"""Class subsets and class-balanced low-label subsets of a dataset's splits.

``--classes`` keeps some classes and re-indexes their labels 0..k-1 in the order
given; ``--train_examples_per_class=N`` keeps N training examples of each kept
class, drawn with ``--subset_seed`` alone (not ``--seed``), so every method and
every seed of a study trains on exactly the same images. Validation keeps every
example of the kept classes.

The draw depends only on the training labels in the split's fixed order, the
kept classes, N and the subset seed, so it is the same in every process and on
every worker.
"""

import dataclasses
import os
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from sskt_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Subset:
    """What part of a dataset to train and validate on.

    Attributes:
        classes: class names or indices to keep, in the new label order
            (empty: every class, in the dataset's order).
        examples_per_class: training examples kept per class (None: all).
        seed: seed of the draw of those examples.
    """

    classes: Tuple[str, ...] = ()
    examples_per_class: Optional[int] = None
    seed: int = 0

    @property
    def active(self):
        """Whether this subset keeps less than the whole dataset."""
        return bool(self.classes) or self.examples_per_class is not None

    def check(self):
        """Refuses values that can never work, before any data is read.

        Raises:
            ConfigError: N < 1, a negative seed, or a class named twice.
        """
        if self.examples_per_class is not None and self.examples_per_class < 1:
            raise ConfigError(
                f"--train_examples_per_class={self.examples_per_class}: keep at least 1 example a class "
                "(leave the flag out to train on every example)."
            )
        if self.seed < 0:
            raise ConfigError(f"--subset_seed must be >= 0, got {self.seed}.")
        repeated = sorted({c for c in self.classes if list(self.classes).count(c) > 1})
        if repeated:
            raise ConfigError(f"--classes names {repeated} more than once.")


@dataclasses.dataclass(frozen=True)
class SubsetPlan:
    """A :class:`Subset` resolved against one dataset.

    Attributes:
        class_indices: the kept classes' indices in the dataset, in new label order.
        class_names: their names, in new label order.
        train_positions: sorted positions (in the training split's fixed
            order) of the kept training examples.
        rest_positions: sorted positions of the kept classes' other training
            examples (those ``examples_per_class`` left out; unlabelled images
            for ``--unlabeled_from_rest``).
        examples_per_class: as asked (None: all).
        seed: the subset seed.
    """

    class_indices: Tuple[int, ...]
    class_names: Tuple[str, ...]
    train_positions: np.ndarray
    rest_positions: np.ndarray
    examples_per_class: Optional[int]
    seed: int

    def label_map(self, num_classes):
        """``[num_classes]`` int64 array: old label -> new label, -1 for a dropped class."""
        mapping = np.full(num_classes, -1, np.int64)
        mapping[list(self.class_indices)] = np.arange(len(self.class_indices))
        return mapping

    def description(self):
        """The plan as JSON-serialisable data (``subset.json`` of a run)."""
        return dict(
            classes=list(self.class_names),
            class_indices=list(self.class_indices),
            train_examples_per_class=self.examples_per_class,
            subset_seed=self.seed,
            train_examples=int(len(self.train_positions)),
            train_positions=[int(p) for p in self.train_positions],
        )


def resolve_classes(requested, class_names):
    """Indices of the requested classes in ``class_names``.

    Args:
        requested: names or decimal indices (a name wins over an index when a
            class is named by digits); empty means every class.
        class_names: the dataset's class names in label order.

    Returns:
        A tuple of indices in the requested order.

    Raises:
        ConfigError: an unknown name or an index out of range.
    """
    if not requested:
        return tuple(range(len(class_names)))
    index_of = {name: i for i, name in enumerate(class_names)}
    indices, unknown = [], []
    for item in requested:
        if item in index_of:
            indices.append(index_of[item])
        elif item.isdigit() and int(item) < len(class_names):
            indices.append(int(item))
        else:
            unknown.append(item)
    if unknown:
        raise ConfigError(
            f"--classes: unknown class {', '.join(map(repr, unknown))}; the dataset's classes are "
            f"{', '.join(f'{i}={n}' for i, n in enumerate(class_names))} (give names or indices)."
        )
    if len(set(indices)) < len(indices):
        raise ConfigError(f"--classes names a class twice (by name and by index): {list(requested)}.")
    return tuple(indices)


def plan(subset, train_labels, class_names):
    """Resolves ``subset`` against a dataset's training labels.

    Args:
        subset: a :class:`Subset`.
        train_labels: int array, the label of every training example in the
            split's fixed order.
        class_names: the dataset's class names in label order.

    Returns:
        A :class:`SubsetPlan`.

    Raises:
        ConfigError: unknown classes, or a class with fewer than N examples.
    """
    subset.check()
    class_indices = resolve_classes(subset.classes, class_names)
    train_labels = np.asarray(train_labels)
    members = {index: np.flatnonzero(train_labels == index) for index in class_indices}
    every = np.sort(np.concatenate([members[i] for i in class_indices]))
    if subset.examples_per_class is None:
        positions = every
    else:
        short = {class_names[i]: len(members[i]) for i in class_indices if len(members[i]) < subset.examples_per_class}
        if short:
            raise ConfigError(
                f"--train_examples_per_class={subset.examples_per_class} is more than these classes hold: "
                f"{', '.join(f'{name} ({count})' for name, count in short.items())}."
            )
        # Each class has its own generator, keyed by (subset seed, class index): its examples do not
        # depend on --seed, on the other kept classes or their order, and N=100 is a prefix of N=500.
        chosen = [
            np.random.default_rng([subset.seed, i]).permutation(members[i])[: subset.examples_per_class]
            for i in class_indices
        ]
        positions = np.sort(np.concatenate(chosen))
    return SubsetPlan(
        class_indices=class_indices,
        class_names=tuple(class_names[i] for i in class_indices),
        train_positions=positions.astype(np.int64),
        rest_positions=np.setdiff1d(every, positions).astype(np.int64),
        examples_per_class=subset.examples_per_class,
        seed=subset.seed,
    )


def keep_files(subset, train, val, class_names, root):
    """Applies ``subset`` to the file lists of a folder dataset (images or videos).

    Args:
        subset: an active :class:`Subset`.
        train: ``(paths, labels)`` numpy arrays of the training files, in their fixed order.
        val: ``(paths, labels)`` of the validation files.
        class_names: the dataset's class names in label order.
        root: the folder, for the relative paths recorded in the description.

    Returns:
        ``(train, val, class_names, description, rest_paths)``: the kept files
        relabelled 0..k-1, the kept class names, :meth:`SubsetPlan.description`
        plus ``train_files`` (the kept training files, relative to ``root``), and
        the kept classes' training files the subset left out.
    """
    kept = plan(subset, train[1], class_names)
    mapping = kept.label_map(len(class_names))
    train_paths, train_labels = train[0][kept.train_positions], mapping[train[1][kept.train_positions]]
    in_kept_class = mapping[val[1]] >= 0
    val = (val[0][in_kept_class], mapping[val[1][in_kept_class]])
    description = dict(kept.description(), train_files=[os.path.relpath(p, root) for p in train_paths])
    return (train_paths, train_labels), val, list(kept.class_names), description, train[0][kept.rest_positions]


def relabel(dataset, subset_plan, num_classes):
    """Keeps the examples of the kept classes and re-indexes their labels.

    Args:
        dataset: ``(image, int label)`` examples.
        subset_plan: a :class:`SubsetPlan`.
        num_classes: the dataset's number of classes.

    Returns:
        The filtered, relabelled dataset (order kept).
    """
    mapping = tf.constant(subset_plan.label_map(num_classes))
    new_label = lambda label: tf.gather(mapping, tf.cast(label, tf.int64))  # noqa: E731
    return dataset.filter(lambda image, label: new_label(label) >= 0).map(
        lambda image, label: (image, new_label(label)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def take_positions(dataset, positions, total):
    """The examples of ``dataset`` at ``positions`` (sorted), in order.

    Args:
        dataset: examples in a fixed order.
        positions: sorted positions to keep.
        total: number of examples of ``dataset`` (at least ``max(positions) + 1``).

    Returns:
        A dataset of the kept examples.
    """
    keep = np.zeros(max(int(total), int(positions[-1]) + 1 if len(positions) else 0), bool)
    keep[positions] = True
    keep = tf.constant(keep)
    return (
        dataset.enumerate()
        .filter(lambda position, example: tf.gather(keep, position))
        .map(lambda position, example: example)
    )
