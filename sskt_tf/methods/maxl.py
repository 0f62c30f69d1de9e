"""``--method=maxl``: Meta AuXiliary Learning (Liu, Davison and Johns, NeurIPS 2019).

A label-generation network proposes auxiliary labels within a class
hierarchy: each primary class owns ``psi`` auxiliary classes, and a
mask-softmax puts an image's auxiliary label distribution on its own class's
``psi`` classes only. The multi-task network (the target plus an auxiliary
classifier on its pooled features) learns the primary labels and the generated
auxiliary ones. The generator learns through a second-order (meta) gradient:
how the primary loss would change after one SGD step of the multi-task
network on the generated labels.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from sskt_tf import targets as targets_lib
from sskt_tf.errors import ConfigError
from sskt_tf.methods import Method, register
from sskt_tf.methods import losses as losses_lib
from sskt_tf.methods.base import Losses, LossTermsModel, l2_penalty, num_replicas, unpack_batch
from sskt_tf.targets.feature_layers import default_feature_layers

FOCAL_GAMMA = 2.0  # the original trains both tasks with a gamma-2 focal loss


def hierarchy_mask(num_classes, psi):
    """``[num_classes, num_classes * psi]`` 0/1 matrix: row c marks class c's auxiliary classes."""
    return np.kron(np.eye(num_classes, dtype="float32"), np.ones((1, psi), dtype="float32"))


def mask_softmax(logits, mask):
    """Softmax over the entries where ``mask`` is 1; exactly 0 elsewhere."""
    masked = ops.where(mask > 0, logits, ops.full_like(logits, -1e9))
    return ops.softmax(masked, axis=-1) * mask


def negative_entropy_of_mean(labels):
    """``sum_c m_c log m_c`` of the batch-mean label distribution ``m``.

    MAXL's regulariser: minimising it spreads the generated labels over all
    auxiliary classes instead of collapsing onto a few.
    """
    mean = ops.mean(labels, axis=0)
    return ops.sum(mean * ops.log(mean + 1e-20))


class MAXLModel(LossTermsModel):
    """Meta auxiliary learning around a target network.

    Each training step
      1. generates auxiliary labels ``g = mask_softmax(G(x), psi-block of y)``;
      2. updates the multi-task network ``theta`` (target + auxiliary head) on
         ``focal(y, f_pri(x)) + focal(g, f_aux(x))``, ``g`` held fixed;
      3. updates the generator ``phi`` on the meta objective
         ``focal(y, f_pri(x; theta+)) + entropy_weight * sum_c m_c log m_c``,
         with ``theta+ = theta - lr * grad_theta L_multi(theta, g(phi))`` one
         plain SGD step at the current learning rate, differentiated through
         that step (second order) to ``phi``.
    The original runs step 2 over an epoch, then step 3 over the same epoch;
    here they alternate every batch. Under a multi-replica strategy the inner
    step and the entropy term use each replica's local batch. The focal loss
    replaces ``compile(loss=...)``.

    Reports ``primary_loss``, ``auxiliary_loss`` (multi-task terms),
    ``meta_loss`` (the primary loss after the inner step) and
    ``entropy_loss``; ``loss`` is the multi-task total.

    Args:
        target: functional ``keras.Model`` (raw images -> primary logits).
        generator: network over the same images with ``num_classes * psi``
            output logits (the original uses the target's architecture).
        psi: auxiliary classes per primary class.
        feature_layer: target layer the auxiliary classifier reads; default:
            the classifier's input (the pooled features).
        name: model name.
    """

    def __init__(self, target, generator, psi, feature_layer=None, name="maxl", **kwargs):
        super().__init__(
            target,
            name=name,
            loss_names=("primary_loss", "auxiliary_loss", "meta_loss", "entropy_loss"),
            training_only=("meta_loss", "entropy_loss"),
            **kwargs,
        )
        self.num_classes = int(target.output_shape[-1])
        self.psi = int(psi)
        if self.psi < 1:
            raise ConfigError(f"MAXL needs psi >= 1 auxiliary classes per class, got {psi}.")
        if int(generator.output_shape[-1]) != self.num_classes * self.psi:
            raise ConfigError(
                f"The MAXL generator outputs {generator.output_shape[-1]} classes; it needs num_classes * psi = "
                f"{self.num_classes * self.psi}."
            )
        self.generator = generator
        feature_layer = feature_layer or default_feature_layers(target, "linear")[0]
        features = target.get_layer(feature_layer).output
        auxiliary = layers.Dense(self.num_classes * self.psi, name="auxiliary_logits", dtype="float32")(features)
        self.multi_task = keras.Model(target.inputs[0], [target.outputs[0], auxiliary], name=f"{name}_multi_task")
        self.hierarchy = hierarchy_mask(self.num_classes, self.psi)

    def compile(self, optimizer="sgd", entropy_weight=0.2, generator_lr=1e-3, **kwargs):
        """Configures training (see :meth:`sskt_tf.methods.base.LossTermsModel.compile` for the other arguments).

        Args:
            optimizer: the multi-task network's optimizer (its learning rate is
                also the inner step's).
            entropy_weight: weight of the generator's entropy regulariser.
            generator_lr: the generator's SGD learning rate, at the
                optimizer's initial learning rate; it follows that rate's
                schedule (the original halves both together).
            **kwargs: ``loss`` (ignored: MAXL uses its focal loss),
                ``weight_decay`` (both networks), ``metrics``, ...
        """
        kwargs.pop("loss", None)
        super().compile(optimizer=optimizer, loss="ce", **kwargs)
        self.entropy_weight = float(entropy_weight)
        self.focal = losses_lib.CategoricalFocalLoss(gamma=FOCAL_GAMMA)
        self.generator_optimizer = keras.optimizers.SGD(learning_rate=generator_lr)
        # Built now, so a backup restored before the first step restores its state too.
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.generator_lr_ratio = float(generator_lr) / float(ops.convert_to_numpy(self.optimizer.learning_rate))

    def generated_labels(self, images, y, training):
        """The generator's auxiliary label distributions, masked to each label's ``psi`` classes."""
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        mask = ops.take(ops.convert_to_tensor(self.hierarchy), labels, axis=0)
        return mask_softmax(ops.cast(self.generator(images, training=training), "float32"), mask)

    def _one_hot(self, y):
        return ops.one_hot(ops.reshape(ops.cast(y, "int32"), (-1,)), self.num_classes)

    def multi_task_terms(self, images, y, auxiliary_labels, sample_weight, training, theta=None):
        """``(primary logits, primary loss, auxiliary loss)`` of the multi-task network.

        Args:
            theta: values for the multi-task network's trainable variables
                (a functional forward pass that leaves the network unchanged);
                None = its own variables.
        """
        if theta is None:
            primary, auxiliary = self.multi_task(images, training=training)
        else:
            state = [v.value for v in self.multi_task.non_trainable_variables]
            (primary, auxiliary), _ = self.multi_task.stateless_call(theta, state, images, training=training)
        primary, auxiliary = ops.cast(primary, "float32"), ops.cast(auxiliary, "float32")
        primary_loss = self.focal(self._one_hot(y), primary, sample_weight=sample_weight)
        auxiliary_loss = self.focal(auxiliary_labels, auxiliary, sample_weight=sample_weight)
        return primary, primary_loss, auxiliary_loss

    def meta_objective(self, images, y, auxiliary_labels, sample_weight=None):
        """The generator's loss: primary loss after one inner SGD step, plus the entropy term.

        Differentiable with respect to the generator through
        ``auxiliary_labels`` (second order: through the inner gradient).

        Returns:
            ``(objective, meta primary loss, negative entropy)``, per replica.
        """
        theta = [v.value for v in self.multi_task.trainable_variables]
        with tf.GradientTape() as inner:
            inner.watch(theta)
            _, primary_loss, auxiliary_loss = self.multi_task_terms(
                images, y, auxiliary_labels, sample_weight, training=True, theta=theta
            )
            inner_loss = primary_loss + auxiliary_loss
        gradients = inner.gradient(inner_loss, theta)
        # Per-replica losses are 1/replicas of the local mean: undo that for the local step.
        step = ops.cast(self.optimizer.learning_rate, "float32") * num_replicas()
        fast = [w - step * ops.cast(g, w.dtype) for w, g in zip(theta, gradients)]
        _, meta_loss, _ = self.multi_task_terms(images, y, auxiliary_labels, sample_weight, training=True, theta=fast)
        entropy = negative_entropy_of_mean(auxiliary_labels) / num_replicas()
        objective = meta_loss + self.entropy_weight * entropy
        return objective, meta_loss, entropy

    @property
    def decayed_variables(self):
        """The multi-task network's variables (the generator's L2 term is in its own objective)."""
        return self.multi_task.trainable_variables

    def train_step(self, data):
        batch = unpack_batch(data)
        images, y, sample_weight = batch.images, batch.labels, batch.sample_weight
        with tf.GradientTape() as generator_tape:
            auxiliary_labels = self.generated_labels(images, y, training=True)
            with generator_tape.stop_recording():
                losses = self._multi_task_step(batch, ops.stop_gradient(auxiliary_labels))
            objective, meta_loss, entropy = self.meta_objective(images, y, auxiliary_labels, sample_weight)
            objective = objective + l2_penalty(self.generator.trainable_variables, self.weight_decay)
        generator_variables = self.generator.trainable_variables
        self.generator_optimizer.learning_rate.assign(self.optimizer.learning_rate * self.generator_lr_ratio)
        self.generator_optimizer.apply_gradients(
            zip(generator_tape.gradient(objective, generator_variables), generator_variables)
        )
        terms = {**losses.terms, "meta_loss": meta_loss, "entropy_loss": entropy}
        return self.record(batch, losses._replace(terms=terms))

    def _multi_task_step(self, batch, auxiliary_labels):
        """One optimizer step of the multi-task network on fixed auxiliary labels; returns its :class:`Losses`."""
        variables = self.multi_task.trainable_variables
        with tf.GradientTape() as tape:
            losses = self.with_weight_decay(self._multi_task_losses(batch, auxiliary_labels, training=True))
            scaled_loss = self.optimizer.scale_loss(losses.total)
        self.optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        return losses

    def loss_terms(self, batch, training):
        """The multi-task terms towards the generator's labels (validation; training runs :meth:`train_step`)."""
        return self._multi_task_losses(batch, self.generated_labels(batch.images, batch.labels, training), training)

    def _multi_task_losses(self, batch, auxiliary_labels, training):
        primary, primary_loss, auxiliary_loss = self.multi_task_terms(
            batch.images, batch.labels, auxiliary_labels, batch.sample_weight, training=training
        )
        terms = {"primary_loss": primary_loss, "auxiliary_loss": auxiliary_loss}
        return Losses([primary], primary_loss + auxiliary_loss, terms)


def _check(config):
    """float16 is refused (its meta gradients are not loss-scaled); MAXL's numeric flags have ranges like every flag."""
    if config.mixed_precision == "mixed_float16":
        raise ConfigError(
            "--method=maxl does not support --mixed_precision=mixed_float16 (its inner and meta "
            "gradients are not loss-scaled); use float32 or mixed_bfloat16."
        )


def build_maxl(config, data):
    """MAXLModel of ``config``: the target, and a generator of the same architecture."""
    target = targets_lib.build_for(config.target, data)
    generator = targets_lib.build_for(config.target, data, num_classes=data.num_classes * config.maxl_psi)
    return MAXLModel(target, generator, config.maxl_psi)


register(
    Method(
        name="maxl",
        summary="meta auxiliary learning: meta-learned auxiliary labels in a psi-per-class hierarchy",
        build=build_maxl,
        compile_kwargs=lambda config: dict(
            entropy_weight=config.maxl_entropy_weight, generator_lr=config.maxl_generator_lr
        ),
        check=_check,
    )
)
