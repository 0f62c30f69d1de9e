"""What every method's Keras model is: :class:`LossTermsModel`, one training step for all.

A method's model says what its loss is (:meth:`LossTermsModel.loss_terms`);
the base does the rest of ``train_step``/``test_step``: the coupled weight
decay (once), the scaling for replicas and mixed precision, the trackers and
the reported metrics. The helpers before it (replica count, L2 term, labelled
weights, empty batches) are the pieces it is built from.
"""

from typing import Any, NamedTuple, Optional

import keras
import tensorflow as tf
from keras import ops

from sskt_tf.errors import ConfigError
from sskt_tf.methods import losses as losses_lib


def num_replicas():
    """Replicas of the active ``tf.distribute`` strategy (1 outside any)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def l2_penalty(variables, weight_decay):
    """Per-replica coupled L2 term ``0.5 * wd * sum(w^2) / replicas``.

    Its gradient, summed over replicas, is ``wd * w``: exactly PyTorch's
    ``SGD(weight_decay=wd)``.

    Args:
        variables: the variables to decay.
        weight_decay: the coefficient ``wd``.

    Returns:
        A float32 scalar (0 without decay).
    """
    if not weight_decay or not variables:
        return 0.0
    squares = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(v, "float32"))) for v in variables]))
    return 0.5 * weight_decay * squares / num_replicas()


def update_loss_trackers(tracked, batch_size):
    """Updates ``keras.metrics.Mean`` trackers with per-replica loss terms.

    Each value is a replica's share of a global-batch mean (see
    :mod:`sskt_tf.methods.losses`), so it is multiplied back by the replica count and
    weighted by the local batch size: the trackers then report global means.

    Args:
        tracked: ``(tracker, per-replica value)`` pairs.
        batch_size: the replica's batch size.
    """
    unscale = float(num_replicas())
    for tracker, value in tracked:
        tracker.update_state(value * unscale, sample_weight=batch_size)


def labelled_weights(y, sample_weight, labelled_fraction=1.0):
    """Labels and weights for a batch that may hold unlabelled examples (label -1).

    Unlabelled images (:mod:`sskt_tf.data.unlabeled`) train the auxiliary losses
    only. With these weights the target loss (a ``sum_over_batch_size`` Keras
    loss) is the mean over the global batch's *labelled* examples, exactly as if
    the batch held them alone, however they fall on the replicas: each labelled
    example weighs ``1 / labelled_fraction``, where ``labelled_fraction`` is
    the labelled share of every global training batch. Multi-label batches
    (label vectors) have no unlabelled examples and pass unchanged.

    Args:
        y: integer labels ``[batch]``, -1 for an unlabelled example.
        sample_weight: per-example weights or None.
        labelled_fraction: labelled examples / batch size of training batches
            (1 in validation, whose batches are all labelled).

    Returns:
        ``(labels, target_weight, metric_weight)``: ``y`` with -1 replaced by 0
        (any class: its weight is 0), the target loss's weights and the
        metrics' weights (1 for labelled, 0 for unlabelled examples; Keras
        applies them to ``compile(weighted_metrics=...)``, not to ``metrics``).
    """
    if len(y.shape) != 1:
        return y, sample_weight, sample_weight
    labelled = y >= 0
    weight = ops.cast(labelled, "float32")
    if sample_weight is not None:
        weight = weight * ops.cast(sample_weight, "float32")
    return ops.where(labelled, y, ops.zeros_like(y)), weight / labelled_fraction, weight


class Batch(NamedTuple):
    """One batch as a method's :meth:`LossTermsModel.loss_terms` sees it.

    Attributes:
        images: raw images ``[batch, H, W, 3]`` (or clips ``[batch, T, H, W, 3]``).
        labels: integer labels (-1 for an unlabelled example) or multi-hot vectors.
        sample_weight: per-example weights, or None.
        soft_labels: the sources' logits, one tensor per source: from a
            soft-label cache, or computed by :meth:`LossTermsModel.prepare`
            outside the gradient tape; None for a method without sources.
    """

    images: Any
    labels: Any
    sample_weight: Any = None
    soft_labels: Optional[list] = None


class Losses(NamedTuple):
    """What :meth:`LossTermsModel.loss_terms` returns for one batch, per replica.

    Attributes:
        outputs: float32 logits, the target's first (the compiled metrics see it).
        total: the weighted total the optimizer minimises, without weight decay
            (the base adds it), as a replica's share of the global-batch mean.
        terms: metric name -> a loss term as a replica's share of a global-batch
            mean (e.g. ``{"target_loss": ..., "kd_loss": ...}``); reported as
            global means.
        rates: metric name -> per-example values ``[batch]`` reported as their
            mean over every example (e.g. a head's agreement with its source).
    """

    outputs: list
    total: Any
    terms: dict
    rates: dict = {}


def unpack_batch(data):
    """The :class:`Batch` of one element of ``fit``'s data.

    Inputs are images, or ``{"images": ..., "soft_labels": (...)}`` when a
    soft-label cache provides the sources' logits.
    """
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if isinstance(x, dict):
        if "images" not in x:
            raise ConfigError(f"Dict inputs need an 'images' entry (and optionally 'soft_labels'), got {sorted(x)}.")
        soft_labels = x.get("soft_labels")
        return Batch(x["images"], y, sample_weight, None if soft_labels is None else list(soft_labels))
    return Batch(x, y, sample_weight)


def images_of(x):
    """The images of a model's inputs (images, or a dict with an ``images`` entry)."""
    if isinstance(x, dict) and "images" not in x:
        raise ConfigError(f"Dict inputs need an 'images' entry (and optionally 'soft_labels'), got {sorted(x)}.")
    return x["images"] if isinstance(x, dict) else x


def skip_empty_batch(images, evaluate_batch, current_results):
    """Runs ``evaluate_batch()`` unless the batch is empty.

    Multi-worker evaluation can hand a worker an empty batch at the end of the
    data, and TensorFlow's oneDNN CPU convolutions return wrongly shaped results
    for empty batches; such a batch changes no metric, so it is skipped. (No
    collectives run in evaluation.)

    Args:
        images: the batch's images.
        evaluate_batch: function of no arguments updating and returning the metrics.
        current_results: function of no arguments returning the metrics unchanged.

    Returns:
        The metrics' results dict.
    """
    return tf.cond(tf.shape(images)[0] > 0, evaluate_batch, current_results)


class LossTermsModel(keras.Model):
    """What every method's model is: a target network trained by ``fit`` on the method's loss terms.

    ``call(x)`` returns the target's logits, so ``predict``, ``evaluate`` and
    export see a plain classifier. A method implements :meth:`loss_terms`;
    ``train_step`` minimises its total plus the coupled L2 term (once, on
    :attr:`decayed_variables`), reports the total as ``loss``, each term and
    rate under its own name (``val_<name>`` in validation), and feeds the
    compiled metrics the target's logits on the labelled examples.

    Args:
        target: functional ``keras.Model`` taking raw images, returning logits.
        name: model name.
        loss_names: the names of the terms :meth:`loss_terms` can return
            (e.g. ``("target_loss", "kd_loss")``).
        rate_names: the names of the rates it can return.
        training_only: the names among them that validation does not compute
            (e.g. MAXL's meta loss).
    """

    sources = ()  # the frozen sources (only SSKT has them)

    def __init__(self, target, name, loss_names=(), rate_names=(), training_only=(), **kwargs):
        super().__init__(name=name, **kwargs)
        self.target = target
        self.term_trackers = [keras.metrics.Mean(name=name) for name in loss_names]
        self.rate_trackers = [keras.metrics.Mean(name=name) for name in rate_names]
        self.training_only = tuple(training_only)
        # Subclasses hold only functional networks built on construction, so every
        # variable exists: fit's BackupAndRestore can restore before the first batch.
        self.built = True

    def call(self, inputs, training=None):
        return self.target(images_of(inputs), training=training)

    @property
    def target_networks(self):
        """The networks of the target's architecture that learn the target task (fine-tuning starts them all)."""
        return [self.target]

    @property
    def decayed_variables(self):
        """The variables the coupled weight decay applies to (default: every trainable one)."""
        return self.trainable_variables

    def compile(self, optimizer="sgd", loss="ce", weight_decay=0.0, metrics=None, labelled_fraction=1.0, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the target's ground-truth loss: ``"ce"``, ``"bce"``, ``"focal"``
                or a ``keras.losses.Loss`` on logits.
            weight_decay: coupled L2 coefficient, ``0.5 * wd * sum(w^2)`` on
                :attr:`decayed_variables`, whose gradient ``wd * w`` is exactly
                PyTorch's ``SGD(weight_decay=wd)``.
            metrics: metrics on ``(y, target logits)``, e.g. ``["accuracy"]``.
            labelled_fraction: the labelled share of every training batch, for
                methods that take unlabelled images (:func:`labelled_weights`);
                1 without them.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``, ...).
        """
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.target_loss_fn = losses_lib.get_target_loss(loss)
        self.weight_decay = float(weight_decay)
        if not 0.0 < labelled_fraction <= 1.0:
            raise ConfigError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}.")
        self.labelled_fraction = float(labelled_fraction)

    def loss_terms(self, batch, training):
        """The method's loss on one batch, per replica.

        Args:
            batch: a :class:`Batch` (after :meth:`prepare`).
            training: forward pass mode; validation calls it with False.

        Returns:
            :class:`Losses` (or its first three fields as a tuple).
        """
        raise NotImplementedError

    def prepare(self, batch, training):
        """Work on a batch outside the gradient tape (SSKT: running the frozen sources); returns the batch."""
        del training
        return batch

    def validation_names(self, batch):
        """The names of the terms and rates validation computes on ``batch`` (all but :attr:`training_only`)."""
        names = [tracker.name for tracker in self.term_trackers + self.rate_trackers]
        return [name for name in names if name not in self.training_only]

    def target_labels(self, batch, training):
        """``(labels, weights)`` for the target loss: labelled examples only (:func:`labelled_weights`)."""
        labels, target_weight, _ = labelled_weights(
            batch.labels, batch.sample_weight, self.labelled_fraction if training else 1.0
        )
        return labels, target_weight

    def with_weight_decay(self, losses):
        """``losses`` with the coupled L2 term on :attr:`decayed_variables` added to the total."""
        return losses._replace(total=losses.total + l2_penalty(self.decayed_variables, self.weight_decay))

    def compute_losses(self, batch, training):
        """:meth:`loss_terms` with the weight decay added to the total."""
        return self.with_weight_decay(Losses(*self.loss_terms(batch, training)))

    def train_step(self, data):
        batch = self.prepare(unpack_batch(data), training=True)
        with tf.GradientTape() as tape:
            losses = self.compute_losses(batch, training=True)
            scaled_loss = self.optimizer.scale_loss(losses.total)  # mixed_float16's loss scaling
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self.record(batch, losses)

    def test_step(self, data):
        batch = unpack_batch(data)

        def evaluate_batch():
            return self.record(batch, self.compute_losses(self.prepare(batch, training=False), training=False))

        names = self.validation_names(batch)
        return skip_empty_batch(batch.images, evaluate_batch, lambda: self.metric_results(names))

    def record(self, batch, losses):
        """Updates the trackers and compiled metrics with one batch's :class:`Losses`; returns every metric's value."""
        trackers = {tracker.name: tracker for tracker in self.term_trackers + self.rate_trackers}
        undeclared = sorted((set(losses.terms) | set(losses.rates)) - set(trackers))
        if undeclared:
            raise ValueError(
                f"loss_terms returned {undeclared}, which {type(self).__name__} does not declare "
                "(loss_names, rate_names)."
            )
        update_loss_trackers(
            [(self._loss_tracker, losses.total), *((trackers[name], value) for name, value in losses.terms.items())],
            ops.shape(batch.images)[0],
        )
        for name, values in losses.rates.items():
            trackers[name].update_state(values)  # per example: a global mean however the batch is split
        labels, _, metric_weight = labelled_weights(batch.labels, batch.sample_weight)  # labelled examples only
        self.compute_metrics(batch.images, labels, losses.outputs[0], sample_weight=metric_weight)
        self.update_extra_metrics(batch, losses.outputs[1:])
        return self.metric_results([*losses.terms, *losses.rates])

    def metric_results(self, names):
        """Every metric's value, leaving out the terms and rates not in ``names`` (those a step did not compute)."""
        results = self.get_metrics_result()
        for tracker in self.term_trackers + self.rate_trackers:
            if tracker.name not in names:
                results.pop(tracker.name, None)
        return results

    def update_extra_metrics(self, batch, other_outputs):
        """Hook for metrics on the outputs after the target's (e.g. DML's second peer)."""
        del batch, other_outputs


# Former names of the base, kept so that imports and isinstance checks still work; subclasses
# written against them need the new constructor (loss_names) and loss_terms(batch, training).
MethodModel = LossTermsModel
BaselineModel = LossTermsModel
