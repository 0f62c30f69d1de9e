"""What every method's Keras model shares: step helpers and :class:`LossTermsModel`.

The helpers (replica count, coupled L2 term, loss trackers, input splitting,
skipping empty batches) are used by :class:`sskt_tf.methods.sskt.SSKTModel`
and every baseline's ``train_step``/``test_step``; :class:`LossTermsModel` is
the train/test step of the baselines.
"""

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


def results_without(model, trackers):
    """``model.get_metrics_result()`` without the given trackers' entries (terms a step did not compute)."""
    results = model.get_metrics_result()
    for tracker in trackers:
        results.pop(tracker.name, None)
    return results


def split_inputs(x):
    """``(images, soft labels or None)`` of a batch's inputs.

    Inputs are images, or ``{"images": ..., "soft_labels": (...)}`` when a
    soft-label cache provides the sources' logits.
    """
    if isinstance(x, dict):
        if "images" not in x:
            raise ConfigError(f"Dict inputs need an 'images' entry (and optionally 'soft_labels'), got {sorted(x)}.")
        soft_labels = x.get("soft_labels")
        return x["images"], None if soft_labels is None else list(soft_labels)
    return x, None


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


class MethodModel(keras.Model):
    """What every method's Keras model is: a target network, called alone, trained with ``fit``.

    ``call(x)`` returns the target's logits, so ``predict``, ``evaluate`` and
    export see a plain classifier; ``compile`` takes the target's loss and the
    coupled weight decay besides Keras' own arguments. Subclasses add their
    networks and ``train_step``/``test_step``, built from the helpers above
    (replica scaling, L2, loss trackers, empty batches).

    Args:
        target: functional ``keras.Model`` taking raw images, returning logits.
        name: model name.
    """

    def __init__(self, target, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.target = target

    def call(self, inputs, training=None):
        images, _ = split_inputs(inputs)
        return self.target(images, training=training)

    @property
    def target_networks(self):
        """The networks of the target's architecture that learn the target task (fine-tuning starts them all)."""
        return [self.target]

    def compile(self, optimizer="sgd", loss="ce", weight_decay=0.0, metrics=None, labelled_fraction=1.0, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the target's ground-truth loss: ``"ce"``, ``"bce"``, ``"focal"``
                or a ``keras.losses.Loss`` on logits.
            weight_decay: coupled L2 coefficient, ``0.5 * wd * sum(w^2)`` on the
                trainable variables, whose gradient ``wd * w`` is exactly
                PyTorch's ``SGD(weight_decay=wd)``.
            metrics: metrics on ``(y, target logits)``, e.g. ``["accuracy"]``.
            labelled_fraction: the labelled share of every training batch, for
                methods that take unlabelled images (:func:`labelled_weights`);
                1 without them.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``, ...).
        """
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.target_loss_fn = losses_lib.get_target(loss)
        self.weight_decay = float(weight_decay)
        if not 0.0 < labelled_fraction <= 1.0:
            raise ConfigError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}.")
        self.labelled_fraction = float(labelled_fraction)


class LossTermsModel(MethodModel):
    """A target network trained with a method-specific loss; ``call(x)`` = target logits.

    Subclasses implement :meth:`loss_terms`. ``train_step`` minimises its
    total plus the coupled L2 term on every trainable variable; each named
    term is reported as ``<term>_loss`` (and ``val_<term>_loss``), the total as
    ``loss``, and the compiled metrics see the target's logits.

    Args:
        target: functional ``keras.Model`` taking raw images, returning logits.
        term_names: names of the loss terms :meth:`loss_terms` returns.
        validation_terms: the subset of them that validation computes
            (default: all).
        name: model name.
    """

    def __init__(self, target, term_names, name, validation_terms=None, **kwargs):
        super().__init__(target, name=name, **kwargs)
        self.term_names = tuple(term_names)
        self.term_trackers = [keras.metrics.Mean(name=f"{term}_loss") for term in term_names]
        self.validation_terms = tuple(validation_terms or term_names)
        # Subclasses hold only functional networks built on construction, so every
        # variable exists: fit's BackupAndRestore can restore before the first batch.
        self.built = True

    @property
    def sources(self):
        """Frozen sources (none: only SSKT has them)."""
        return []

    def loss_terms(self, images, y, sample_weight, training):
        """The method's loss on one batch, per replica.

        Args:
            images: raw images.
            y: labels.
            sample_weight: optional per-example weights.
            training: forward pass mode.

        Returns:
            ``(outputs, total, terms)``: a list of float32 logits whose first
            entry is the target's, the weighted total (without L2), and a dict
            of the named terms (a subset of ``term_names``).
        """
        raise NotImplementedError

    def total_with_l2(self, total):
        """``total`` plus the coupled L2 term on the trainable variables."""
        return total + l2_penalty(self.trainable_variables, self.weight_decay)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images, _ = split_inputs(x)
        with tf.GradientTape() as tape:
            outputs, total, terms = self.loss_terms(images, y, sample_weight, training=True)
            total = self.total_with_l2(total)
            scaled_loss = self.optimizer.scale_loss(total)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return self.update_metrics(images, y, outputs, total, terms, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        images, _ = split_inputs(x)

        def evaluate_batch():
            outputs, total, terms = self.loss_terms(images, y, sample_weight, training=False)
            return self.update_metrics(images, y, outputs, self.total_with_l2(total), terms, sample_weight)

        return skip_empty_batch(images, evaluate_batch, lambda: self.metric_results(self.validation_terms))

    def update_metrics(self, images, y, outputs, total, terms, sample_weight):
        """Updates the loss trackers and compiled metrics; returns every metric's value."""
        computed = [
            (tracker, terms[term]) for term, tracker in zip(self.term_names, self.term_trackers) if term in terms
        ]
        update_loss_trackers([(self._loss_tracker, total), *computed], ops.shape(images)[0])
        labels, _, metric_weight = labelled_weights(y, sample_weight)  # metrics count labelled examples only
        self.compute_metrics(images, labels, outputs[0], sample_weight=metric_weight)
        self.update_extra_metrics(y, outputs[1:], sample_weight)
        return self.metric_results(terms)

    def metric_results(self, terms):
        """Every metric's value, leaving out the trackers of terms not in ``terms``
        (e.g. MAXL's meta terms, which only training computes)."""
        return results_without(
            self, [tracker for term, tracker in zip(self.term_names, self.term_trackers) if term not in terms]
        )

    def update_extra_metrics(self, y, other_outputs, sample_weight):
        """Hook for metrics on the outputs after the target's (e.g. DML's second peer)."""
        del y, other_outputs, sample_weight


# The former name, kept for code written against it.
BaselineModel = LossTermsModel
