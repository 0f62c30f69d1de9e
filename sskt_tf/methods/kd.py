"""``--method=kd``: Hinton et al.'s knowledge distillation from a teacher over the target's classes."""

from keras import ops

from sskt_tf import sources as sources_lib
from sskt_tf import targets as targets_lib
from sskt_tf.errors import ConfigError
from sskt_tf.methods import Method, register
from sskt_tf.methods import losses as losses_lib
from sskt_tf.methods.base import Losses, LossTermsModel


class KDModel(LossTermsModel):
    """A student (the target) trained towards a frozen teacher's softened predictions.

        loss = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t/T) || softmax(s/T))

    with ``s`` the student's and ``t`` the teacher's logits on the same
    augmented images. Reports ``target_loss`` (the CE) and ``kd_loss``.

    Args:
        student: functional ``keras.Model`` taking raw images, returning logits.
        teacher: a :class:`sskt_tf.sources.Source` over the same classes
            (frozen, always in inference mode).
        name: model name.

    Example:
        >>> teacher = sskt_tf.sources.from_file("runs/teacher/best.keras", name="teacher")
        >>> model = KDModel(sskt_tf.targets.cifar_resnet(20, 10), teacher)
        >>> model.compile(keras.optimizers.SGD(0.1, momentum=0.9), alpha=0.9, temperature=4.0)
    """

    def __init__(self, student, teacher, name="kd", **kwargs):
        super().__init__(student, name=name, loss_names=("target_loss", "kd_loss"), **kwargs)
        student_classes = int(student.output_shape[-1])
        if teacher.num_classes != student_classes:
            raise ConfigError(
                f"The KD teacher {teacher.name!r} predicts {teacher.num_classes} classes but the target has "
                f"{student_classes}: the teacher must be trained on the target's label space."
            )
        self.teacher = teacher
        teacher(student.inputs[0])  # builds the teacher on the student's image spec

    def compile(self, optimizer="sgd", alpha=0.9, temperature=4.0, **kwargs):
        """Configures training (see :meth:`sskt_tf.methods.base.LossTermsModel.compile` for the other arguments).

        Args:
            optimizer: a Keras optimizer or its name.
            alpha: weight of the distillation term; ``1 - alpha`` weighs the CE.
            temperature: softmax temperature ``T``.
            **kwargs: ``loss``, ``weight_decay``, ``metrics``, ``jit_compile``, ...
        """
        super().compile(optimizer=optimizer, **kwargs)
        self.alpha = float(alpha)
        self.kd_loss_fn = losses_lib.KDLoss(temperature=temperature)

    def loss_terms(self, batch, training):
        teacher_logits = ops.stop_gradient(self.teacher(batch.images, training=False))
        logits = ops.cast(self.target(batch.images, training=training), "float32")
        # The CE sees labelled examples only; the distillation term every example, unlabelled ones too.
        labels, ce_weight = self.target_labels(batch, training)
        ce = self.target_loss_fn(labels, logits, sample_weight=ce_weight)
        kd = self.kd_loss_fn(teacher_logits, logits, sample_weight=batch.sample_weight)
        return Losses([logits], (1.0 - self.alpha) * ce + self.alpha * kd, {"target_loss": ce, "kd_loss": kd})


def _teacher_path(config):
    if not config.teacher:
        raise ConfigError(
            "--method=kd needs --teacher=PATH: a .keras classifier over the target's classes "
            "(e.g. the best.keras of a --method=scratch run of a larger target)."
        )
    return config.teacher


def _check(config):
    """``--teacher`` must be given (the up-front check looks for its file); ``--alpha`` weighs a convex combination."""
    if not 0.0 <= config.alpha <= 1.0:
        raise ConfigError(f"--method=kd weighs (1-alpha)*CE + alpha*KD: --alpha must be in [0, 1], got {config.alpha}.")
    _teacher_path(config)


def build_kd(config, data):
    """KDModel of ``config``: the target as student, ``--teacher`` as the teacher."""
    teacher = sources_lib.from_file(_teacher_path(config), name="teacher", input_size=config.source_image_size or None)
    return KDModel(targets_lib.build_for(config.target, data), teacher)


register(
    Method(
        name="kd",
        summary="distillation from --teacher: (1-alpha)*CE + alpha*T^2*KL",
        build=build_kd,
        compile_kwargs=lambda config: dict(alpha=config.alpha, temperature=config.temperature),
        check=_check,
        files=lambda config: {"teacher": config.teacher},
        uses_unlabeled=True,
        defaults={"alpha": 0.9, "temperature": 4.0},
    )
)
