"""Unlabelled training images: they train the auxiliary losses, never the target loss.

SSKT's auxiliary targets come from the sources, not from labels, so every image
the target can see may train its heads (STL-10 ships 100,000 unlabelled images
for this). Unlabelled examples carry the label :data:`UNLABELED` (-1); every
training batch holds ``batch_size`` labelled examples and
``round(ratio * batch_size)`` unlabelled ones, spread evenly through the batch
(:func:`sskt_tf.data.pipeline.mix_batches`, so each replica of a distributed
step gets its share of both), and the methods
that use them (:func:`sskt_tf.methods.base.target_weights`) mask the target
loss and the metrics to the labelled ones.

Where they come from: ``--unlabeled_dataset=folder:DIR`` (every image under
``DIR``), ``--unlabeled_dataset=NAME:SPLIT`` (a tfds split, e.g.
``stl10:unlabelled``), and ``--unlabeled_from_rest`` (the kept classes'
training images that ``--train_examples_per_class`` left out, labels dropped);
both may be given, the rest coming first.
"""

import dataclasses

from sskt_tf.data import kinds
from sskt_tf.errors import ConfigError

# The label of an unlabelled example.
UNLABELED = -1


@dataclasses.dataclass(frozen=True)
class UnlabeledImages:
    """Which unlabelled images a run trains its auxiliary losses on, and how many a batch.

    Attributes:
        dataset: ``folder:DIR``, ``NAME:SPLIT`` (tfds) or empty.
        from_rest: add the kept classes' training images that the class-balanced
            subset left out.
        ratio: unlabelled examples per labelled one in every batch.
    """

    dataset: str = ""
    from_rest: bool = False
    ratio: float = 1.0

    @property
    def active(self):
        """Whether the run has unlabelled images at all."""
        return bool(self.dataset) or self.from_rest

    def per_batch(self, batch_size):
        """Unlabelled examples in a batch of ``batch_size`` labelled ones (0 when inactive)."""
        return max(1, round(self.ratio * batch_size)) if self.active else 0

    def labelled_fraction(self, batch_size):
        """The labelled share of a training batch of ``batch_size`` labelled examples (1 without unlabelled ones)."""
        return batch_size / (batch_size + self.per_batch(batch_size))

    def check(self, examples_per_class):
        """Refuses settings that can never work, before any data is read.

        Args:
            examples_per_class: the run's ``--train_examples_per_class`` (None: all).

        Raises:
            ConfigError: naming the flag.
        """
        if self.from_rest and examples_per_class is None:
            raise ConfigError(
                "--unlabeled_from_rest uses the training images --train_examples_per_class leaves out; "
                "without that flag every image is labelled: set it, or drop --unlabeled_from_rest."
            )
        if self.dataset:
            kind, location = kinds.resolve(self.dataset)
            if kind.load_unlabeled is None:
                raise ConfigError(
                    f"--unlabeled_dataset={self.dataset}: {kind.name} data cannot serve as unlabelled images; use "
                    "folder:DIR (a directory of images) or a tfds split as NAME:SPLIT (e.g. stl10:unlabelled)."
                )
            kind.check_unlabeled(location)

    def load(self, rest, image_size, data_dir=None, download=True):
        """The unlabelled examples, resized, in a fixed order.

        Args:
            rest: ``(dataset, count)`` of the subset's left-out training images
                (``info["rest_train"]`` of a loaded dataset), or None.
            image_size: the run's image side length.
            data_dir: tfds data directory.
            download: let tfds download a split that is not prepared.

        Returns:
            ``(dataset, count)`` of ``(uint8 image, -1)`` examples.
        """
        parts = []
        if self.from_rest:
            if not rest or not rest[1]:
                raise ConfigError(
                    "--unlabeled_from_rest: --train_examples_per_class keeps every training image of the kept "
                    "classes, so none is left to use unlabelled."
                )
            parts.append(rest)
        if self.dataset:
            kind, location = kinds.resolve(self.dataset)
            parts.append(kind.load_unlabeled(location, image_size, data_dir, download))
        dataset = parts[0][0]
        for more, _ in parts[1:]:
            dataset = dataset.concatenate(more)
        return dataset, sum(count for _, count in parts)

    def description(self, count, batch_size):
        """What ``results.json`` records about the unlabelled images."""
        return dict(
            unlabeled_dataset=self.dataset,
            unlabeled_from_rest=self.from_rest,
            unlabeled_examples=int(count),
            unlabeled_per_batch=self.per_batch(batch_size),
        )
