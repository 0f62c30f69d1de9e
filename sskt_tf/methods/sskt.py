"""``--method=sskt``: the paper's Self-Supervised Knowledge Transfer.

:class:`SSKTModel` is a target network trained with one auxiliary head per
frozen source towards the source's soft labels; :func:`build_sskt` makes one
from the flags.
"""

import keras
from keras import ops

from sskt_tf import sources as sources_lib
from sskt_tf import targets as targets_lib
from sskt_tf.errors import ConfigError
from sskt_tf.methods import Method, register
from sskt_tf.methods import heads as heads_lib
from sskt_tf.methods import losses as losses_lib
from sskt_tf.methods.base import Losses, LossTermsModel
from sskt_tf.sources import flags as source_flags
from sskt_tf.targets.feature_layers import default_feature_layers


@keras.saving.register_keras_serializable(package="sskt_tf")
class SSKTModel(LossTermsModel):
    """Self-Supervised Knowledge Transfer around any functional target network.

    ``call(x)`` returns the target's logits only, so ``predict``, ``evaluate``
    and export see a plain classifier. ``train_step``/``test_step`` add one
    auxiliary head per source, trained to predict that source's soft labels:

        loss = target_loss(y, f(x)) + alpha * sum_s aux_loss(g_s(x), h_s(x)) + l2

    Besides the losses it reports, per source, ``aux_<name>_floor`` (the
    auxiliary loss of a head equal to its source: 0 for ``kd``, the soft
    labels' entropy times T^2 for ``soft_ce``) and ``aux_<name>_agreement``
    (how often the head's top-1 class is the source's), in training and, when
    validation computes the auxiliary losses, in validation: together they say
    whether a head learned its source.

    Batches are ``(images, labels)`` (or ``(clips, labels)`` with clips
    ``[batch, T, H, W, 3]`` for a 3-D target, whose sources see the centre
    frame), and the sources run inside the step; or
    ``({"images": images, "soft_labels": (logits_1, ...)}, labels)`` with the
    sources' logits precomputed (:mod:`sskt_tf.soft_labels`, whose
    :class:`~sskt_tf.soft_labels.CachedSource` placeholders stand for the
    sources then).

    Args:
        target: functional ``keras.Model`` taking raw images, returning logits.
        sources: list of :class:`sskt_tf.sources.Source`; empty = train from
            scratch.
        head: ``"transfer"`` (transfer module on the stage outputs) or
            ``"linear"`` (Dense on the pooled final features).
        feature_layers: names of the target layers the heads tap; default:
            layers named ``stage<N>`` (transfer) or the classifier's input
            (linear).
        head_width: branch width ``C`` of the transfer modules (their inner
            width is ``C // 2``); None: the last stage's channels on images,
            the original's 1000 on clips.
        name: model name.

    Example:
        >>> target = sskt_tf.targets.cifar_resnet(20, num_classes=10)
        >>> source = sskt_tf.sources.imagenet("resnet50", weights=None, input_size=74)
        >>> model = SSKTModel(target, [source])
        >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
        >>> model.fit(train_ds, validation_data=val_ds, epochs=200)
    """

    def __init__(
        self, target, sources=(), head="transfer", feature_layers=None, head_width=None, name="sskt", **kwargs
    ):
        source_names = [source.name for source in sources]
        if len(set(source_names)) != len(source_names):
            raise ConfigError(f"Source names must be unique, got {source_names}.")
        # Per source: its head's loss, the loss's floor (that of a head equal to the source: 0
        # for kd, the soft labels' entropy for soft_ce) and how often the head's top-1 class is
        # the source's. Together they say whether a head learned its source.
        super().__init__(
            target,
            name=name,
            loss_names=(
                "target_loss",
                *(f"aux_{name}_loss" for name in source_names),
                *(f"aux_{name}_floor" for name in source_names),
            ),
            rate_names=[f"aux_{name}_agreement" for name in source_names],
            **kwargs,
        )
        if head not in heads_lib.HEAD_KINDS:
            raise ConfigError(f"Unknown head {head!r}; choose one of {', '.join(heads_lib.HEAD_KINDS)}.")
        self.sources = list(sources)
        self.head_kind = head
        # Without sources there is no head, so any target (one without stage names too) trains alone.
        self.feature_layers = list(feature_layers or (default_feature_layers(target, head) if self.sources else []))
        self.head_width = None if head_width is None else int(head_width)
        video = len(target.inputs[0].shape) == 5
        self.heads = [
            heads_lib.build(head, source.num_classes, name=f"head_{source.name}", video=video, width=self.head_width)
            for source in self.sources
        ]
        self._network = self._build_network()

    def _build_network(self):
        """Functional model ``images -> [target logits, head_1 logits, ...]``.

        Shares every layer with ``self.target``; building it here creates the
        heads' variables eagerly (inside whatever strategy scope is active).
        """
        try:
            taps = [self.target.get_layer(name).output for name in self.feature_layers]
        except ValueError as error:
            raise ConfigError(
                f"Target {self.target.name!r} has no layer among {self.feature_layers}: {error}"
            ) from error
        for source in self.sources:
            source(self.target.inputs[0])  # builds the source on the target's image spec
        head_outputs = [head(taps) for head in self.heads]
        return keras.Model(self.target.inputs[0], [self.target.outputs[0], *head_outputs], name=f"{self.name}_network")

    def _forward(self, x, training):
        """``[target logits, head_1 logits, ...]`` in one pass over the target."""
        outputs = self._network(x, training=training)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def compile(
        self,
        optimizer="sgd",
        loss="ce",
        aux_loss="kd",
        alpha=0.1,
        temperature=3.0,
        weight_decay=0.0,
        metrics=None,
        val_aux_losses=True,
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: target loss on logits: ``"ce"``, ``"bce"``, ``"focal"`` or a
                ``keras.losses.Loss``.
            aux_loss: auxiliary loss: ``"kd"``, ``"soft_ce"``, ``"bce"``,
                ``"focal"`` or a ``keras.losses.Loss``.
            alpha: weight of the auxiliary losses.
            temperature: temperature ``T`` of the named auxiliary loss.
            weight_decay: coupled L2 coefficient on the target and head
                variables, ``0.5 * wd * sum(w^2)``, whose gradient ``wd * w``
                is exactly PyTorch's ``SGD(weight_decay=wd)``.
            metrics: metrics on ``(y, target logits)``, e.g. ``["accuracy"]``.
            val_aux_losses: also compute the auxiliary losses in ``evaluate``
                (which runs every source on every validation batch); False
                validates the target alone. Batches that carry soft labels
                always get them.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ...).
        """
        super().compile(optimizer=optimizer, loss=loss, weight_decay=weight_decay, metrics=metrics, **kwargs)
        self._sskt_compile_args = dict(
            optimizer=optimizer,
            loss=loss,
            aux_loss=aux_loss,
            alpha=alpha,
            temperature=temperature,
            weight_decay=weight_decay,
            metrics=metrics,
            val_aux_losses=val_aux_losses,
            **kwargs,
        )
        self.aux_loss_fn = losses_lib.get(aux_loss, temperature=temperature)
        self.alpha = float(alpha)
        self.val_aux_losses = bool(val_aux_losses)

    def get_compile_config(self):
        if not self.compiled:
            return {}
        return keras.saving.serialize_keras_object(self._sskt_compile_args)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        return {
            "name": self.name,
            "target": keras.saving.serialize_keras_object(self.target),
            "sources": [keras.saving.serialize_keras_object(source) for source in self.sources],
            "head": self.head_kind,
            "feature_layers": list(self.feature_layers),
            "head_width": self.head_width,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        target = keras.saving.deserialize_keras_object(config.pop("target"))
        sources = [keras.saving.deserialize_keras_object(source) for source in config.pop("sources")]
        return cls(target, sources, **config)

    def prepare(self, batch, training):
        """The batch with its soft labels: cached, or from the frozen sources, run here outside the gradient tape.

        Validation runs the sources only when it computes the auxiliary losses (:meth:`validates_heads`).
        """
        if batch.soft_labels is not None or not self.sources or (not training and not self.validates_heads(batch)):
            return batch
        return batch._replace(soft_labels=[source(batch.images, training=False) for source in self.sources])

    def validates_heads(self, batch):
        """Whether validation computes the auxiliary losses on ``batch``: it has soft labels, or the
        sources can run and ``compile(val_aux_losses=True)``."""
        return bool(self.sources) and (batch.soft_labels is not None or (self.val_aux_losses and self.sources_run))

    def validation_names(self, batch):
        if self.validates_heads(batch):
            return super().validation_names(batch)
        return ["target_loss"]

    def loss_terms(self, batch, training):
        """The target loss (labelled examples), and per source the head's loss, floor and agreement (all examples).

        ``total = target_loss + alpha * sum of the heads' losses``; a batch
        without soft labels (validation of the target alone) has the target loss only.
        """
        if batch.soft_labels is None:
            return self.losses_from_outputs(batch, [self.target(batch.images, training=training)], training)
        return self.losses_from_outputs(batch, self._forward(batch.images, training=training), training)

    def losses_from_outputs(self, batch, outputs, training):
        """:class:`~sskt_tf.methods.base.Losses` of the network's outputs ``[target logits, head logits...]``.

        Args:
            batch: a :class:`~sskt_tf.methods.base.Batch` whose soft labels
                (if any) match the heads.
            outputs: the target's logits, then each head's (none without soft labels).
            training: whether the labelled fraction of training batches applies.
        """
        target_logits, *head_logits = [ops.cast(o, "float32") for o in outputs]
        soft_labels = batch.soft_labels or []
        if len(soft_labels) != len(head_logits):
            raise ConfigError(f"Got soft labels of {len(soft_labels)} sources for {len(head_logits)} auxiliary heads.")
        labels, target_weight = self.target_labels(batch, training)
        terms = {"target_loss": self.target_loss_fn(labels, target_logits, sample_weight=target_weight)}
        soft_labels = [ops.stop_gradient(ops.cast(soft, "float32")) for soft in soft_labels]
        names = [source.name for source in self.sources]
        aux = [
            self.aux_loss_fn(soft, logits, sample_weight=batch.sample_weight)
            for soft, logits in zip(soft_labels, head_logits)
        ]
        terms.update({f"aux_{name}_loss": loss for name, loss in zip(names, aux)})
        terms.update(
            {
                f"aux_{name}_floor": self.aux_loss_fn(soft, soft, sample_weight=batch.sample_weight)
                for name, soft in zip(names, soft_labels)
            }
        )
        rates = {
            f"aux_{name}_agreement": ops.cast(ops.argmax(logits, axis=-1) == ops.argmax(soft, axis=-1), "float32")
            for name, soft, logits in zip(names, soft_labels, head_logits)
        }
        total = terms["target_loss"] + self.alpha * ops.sum(ops.stack(aux)) if aux else terms["target_loss"]
        return Losses([target_logits], total, terms, rates)

    @property
    def sources_run(self):
        """Whether the sources can run (False when cached soft labels stand for them)."""
        return all(getattr(source, "runnable", True) for source in self.sources)


def build_sskt(config, data):
    """SSKTModel of ``config``: the target, its sources (or a cache's placeholders) and heads."""
    # The sources first: loading them draws from the seeded random generator, so this order
    # keeps the target's initial weights those of a run of earlier versions with the same seed.
    sources = source_flags.for_run(config, data)
    return SSKTModel(
        targets_lib.build_for(config.target, data),
        sources,
        head=config.head,
        feature_layers=config.feature_layers or None,
        head_width=config.head_width or None,
    )


def sskt_compile_kwargs(config):
    """SSKTModel.compile's own arguments from the flags."""
    return dict(
        aux_loss=config.aux_loss,
        alpha=config.alpha,
        temperature=config.temperature,
        val_aux_losses=config.val_aux_losses,
    )


def _check(config):
    """At least one source, each a spec some source family takes.

    Whether each is on this machine (or can be downloaded) is the run's up-front check
    (:mod:`sskt_tf.training.availability`), which lists every missing item at once.
    """
    if not config.sources:
        raise ConfigError(
            "--method=sskt needs at least one source (--sources=...): without one it would train the target "
            "alone. For that, use --method=scratch."
        )
    for spec in config.sources:
        sources_lib.parse_spec(spec)


register(
    Method(
        name="sskt",
        summary="target + one auxiliary head per frozen source, trained towards the sources' soft labels",
        build=build_sskt,
        compile_kwargs=sskt_compile_kwargs,
        check=_check,
        uses_sources=True,
        uses_unlabeled=True,
        multi_label=True,
        defaults={"alpha": 0.1, "temperature": 3.0},
    )
)
