"""BaselineModel: the train/test step shared by the baselines' Keras models."""

import logging

import keras
import tensorflow as tf
from keras import ops

from sskt_tf import losses as losses_lib
from sskt_tf.config import TrainConfig
from sskt_tf.step_utils import l2_penalty, results_without, skip_empty_batch, split_inputs, update_loss_trackers


def warn_if_sskt_weights(config, usual):
    """Warns when ``--alpha``/``--temperature`` are still SSKT's defaults for a method that usually differs.

    Args:
        config: the run's :class:`TrainConfig`.
        usual: what the method usually takes, e.g. ``"--alpha=0.9 --temperature=4"``.
    """
    defaults = TrainConfig()
    if (config.alpha, config.temperature) == (defaults.alpha, defaults.temperature):
        logging.warning("--method=%s runs with --alpha=%s --temperature=%s, SSKT's defaults; it usually takes %s "
                        "(configs/paper/*/%s.flags).", config.method, config.alpha, config.temperature, usual,
                        config.method)


class BaselineModel(keras.Model):
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
        super().__init__(name=name, **kwargs)
        self.target = target
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

    def call(self, inputs, training=None):
        images, _ = split_inputs(inputs)
        return self.target(images, training=training)

    def compile(self, optimizer="sgd", loss="ce", weight_decay=0.0, metrics=None, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: the target's ground-truth loss: ``"ce"``, ``"focal"`` or a
                ``keras.losses.Loss`` on logits.
            weight_decay: coupled L2 coefficient on every trainable variable
                (PyTorch ``SGD(weight_decay=...)`` semantics).
            metrics: metrics on ``(y, target logits)``.
            **kwargs: passed to ``keras.Model.compile``.
        """
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.target_loss_fn = losses_lib.get_target(loss)
        self.weight_decay = float(weight_decay)

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
        computed = [(tracker, terms[term]) for term, tracker in zip(self.term_names, self.term_trackers) if term in terms]
        update_loss_trackers([(self._loss_tracker, total), *computed], ops.shape(images)[0])
        self.compute_metrics(images, y, outputs[0], sample_weight=sample_weight)
        self.update_extra_metrics(y, outputs[1:], sample_weight)
        return self.metric_results(terms)

    def metric_results(self, terms):
        """Every metric's value, leaving out the trackers of terms not in ``terms``
        (e.g. MAXL's meta terms, which only training computes)."""
        return results_without(
            self, [tracker for term, tracker in zip(self.term_names, self.term_trackers) if term not in terms])

    def update_extra_metrics(self, y, other_outputs, sample_weight):
        """Hook for metrics on the outputs after the target's (e.g. DML's second peer)."""
        del y, other_outputs, sample_weight
