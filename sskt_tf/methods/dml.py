"""``--method=dml``: deep mutual learning (Zhang et al., CVPR 2018) with two peers."""

import keras
from keras import ops

from sskt_tf import targets as targets_lib
from sskt_tf.methods import Method, register
from sskt_tf.methods import losses as losses_lib
from sskt_tf.methods.base import Losses, LossTermsModel


class DMLModel(LossTermsModel):
    """Two peer networks trained together, each towards the labels and the other peer.

        loss_k = CE(y, z_k) + alpha * T^2 * KL(softmax(z_j/T) || softmax(z_k/T)),  j != k
        loss   = loss_1 + loss_2

    The other peer's logits are constants in each peer's term, so the sum
    gives every peer exactly the gradient of its own loss; both peers update in
    the same step (the original alternates the two updates within a step).
    ``call``, saving and export use peer 1 (``target``); peer 2 is
    ``peer2`` and its validation accuracy is reported as ``val_peer2_accuracy``.

    Args:
        peer1: functional ``keras.Model`` (the target).
        peer2: a second network over the same classes (may differ in architecture).
        name: model name.
    """

    def __init__(self, peer1, peer2, name="dml", **kwargs):
        super().__init__(
            peer1,
            name=name,
            loss_names=("target_loss", "mutual_loss", "peer2_target_loss", "peer2_mutual_loss"),
            **kwargs,
        )
        self.peer2 = peer2
        self.peer2_accuracy = keras.metrics.SparseCategoricalAccuracy(name="peer2_accuracy")

    @property
    def target_networks(self):
        """Both peers: fine-tuning starts each from the pretrained weights."""
        return [self.target, self.peer2]

    def compile(self, optimizer="sgd", alpha=1.0, temperature=1.0, **kwargs):
        """Configures training (see :meth:`sskt_tf.methods.base.LossTermsModel.compile` for the other arguments).

        Args:
            optimizer: a Keras optimizer or its name.
            alpha: weight of each peer's KL term (1 in the DML paper).
            temperature: softmax temperature ``T`` of the KL terms (1 in the paper).
            **kwargs: ``loss``, ``weight_decay``, ``metrics``, ``jit_compile``, ...
        """
        super().compile(optimizer=optimizer, **kwargs)
        self.alpha = float(alpha)
        self.mutual_loss_fn = losses_lib.KDLoss(temperature=temperature)

    def loss_terms(self, batch, training):
        y, sample_weight = batch.labels, batch.sample_weight
        z1 = ops.cast(self.target(batch.images, training=training), "float32")
        z2 = ops.cast(self.peer2(batch.images, training=training), "float32")
        terms = {
            "target_loss": self.target_loss_fn(y, z1, sample_weight=sample_weight),
            "mutual_loss": self.mutual_loss_fn(ops.stop_gradient(z2), z1, sample_weight=sample_weight),
            "peer2_target_loss": self.target_loss_fn(y, z2, sample_weight=sample_weight),
            "peer2_mutual_loss": self.mutual_loss_fn(ops.stop_gradient(z1), z2, sample_weight=sample_weight),
        }
        mutual = terms["mutual_loss"] + terms["peer2_mutual_loss"]
        total = terms["target_loss"] + terms["peer2_target_loss"] + self.alpha * mutual
        return Losses([z1, z2], total, terms)

    def update_extra_metrics(self, batch, other_outputs):
        self.peer2_accuracy.update_state(batch.labels, other_outputs[0], sample_weight=batch.sample_weight)


def build_dml(config, data):
    """DMLModel of ``config``: two independently initialised ``--target`` networks."""
    return DMLModel(targets_lib.build_for(config.target, data), targets_lib.build_for(config.target, data))


register(
    Method(
        name="dml",
        summary="deep mutual learning: two peers, CE + alpha*T^2*KL towards each other",
        build=build_dml,
        compile_kwargs=lambda config: dict(alpha=config.alpha, temperature=config.temperature),
        defaults={"alpha": 1.0, "temperature": 1.0},
    )
)
