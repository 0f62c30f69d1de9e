"""Fine-tuning: a target starts from a pretrained network and trains from a given stage on.

The paper fine-tunes Hara's Kinetics-400 3D ResNet-18 on UCF101 and HMDB51,
training ``layer4`` and a new ``fc`` only (``--pretrained=resnet-18-kinetics.pth
--train_from=layer4``). Weights are copied layer by layer where the names and
shapes agree (the built-in targets carry the torch module names, so converted
checkpoints fit); a classifier over another number of classes keeps its fresh
initialisation. Frozen layers are not trainable, and a frozen BatchNorm runs in
inference mode, so its statistics stay those of the pretrained network.
"""

import logging
import os

from sskt_tf.errors import ConfigError
from sskt_tf.sources import torch_checkpoint
from sskt_tf.sources.files import load_keras_file


def pretrained_network(path, trust_pickle=False):
    """The network to start from: a ``.keras`` model, or a PyTorch checkpoint converted on the fly.

    Args:
        path: a ``.keras`` file (e.g. a run's ``best.keras`` or a converted
            checkpoint), or a torchvision/Hara checkpoint (``.pth``, ``.pth.tar``, ``.npz``).
        trust_pickle: see :func:`sskt_tf.sources.torch_checkpoint.read_state_dict`.

    Returns:
        A ``keras.Model``.
    """
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise ConfigError(f"--pretrained={path} does not exist.")
    if path.endswith(".keras"):
        return load_keras_file(path, "--pretrained")
    return torch_checkpoint.convert(path, trust_pickle=trust_pickle)


def load_pretrained(target, pretrained):
    """Copies the weights of every layer of ``pretrained`` with the same name and weight shapes into ``target``.

    Args:
        target: the freshly built target network.
        pretrained: the network to start from.

    Returns:
        ``(copied, kept)``: names of the layers copied, and of the target's
        layers with weights that kept their initialisation (e.g. a classifier
        over another number of classes).

    Raises:
        ConfigError: no layer could be copied (another architecture).
    """
    by_name = {layer.name: layer for layer in pretrained.layers if layer.weights}
    copied, kept = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        source = by_name.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if source is None or [tuple(w.shape) for w in source.weights] != shapes:
            kept.append(layer.name)
            continue
        layer.set_weights(source.get_weights())
        copied.append(layer.name)
    if not copied:
        raise ConfigError(
            f"--pretrained network {pretrained.name!r} shares no layer (same name and shapes) with the target "
            f"{target.name!r}: use a network of the target's architecture."
        )
    logging.info(
        "Started %s from %s: %d layers copied; %d kept their initialisation%s.",
        target.name,
        pretrained.name,
        len(copied),
        len(kept),
        f" ({', '.join(kept[:5])}{', ...' if len(kept) > 5 else ''})" if kept else "",
    )
    return copied, kept


def freeze_before(target, stage):
    """Freezes every layer of ``target`` before the first layer of ``stage`` (Hara's ``ft_begin_index``).

    Args:
        target: the target network.
        stage: a layer name or its prefix, e.g. ``"layer4"`` (matches
            ``layer4.0.conv1``, ...) or ``"stage3"``; the layers from its first
            layer on (in the model's layer order) keep training.

    Returns:
        The names of the frozen layers that hold weights.

    Raises:
        ConfigError: no layer has that name or prefix.
    """
    names = [layer.name for layer in target.layers]
    first = next(
        (i for i, name in enumerate(names) if name == stage or name.startswith((f"{stage}.", f"{stage}_"))), None
    )
    if first is None:
        stages = [name for name in names if "." not in name and "_" not in name]
        raise ConfigError(f"--train_from={stage}: {target.name} has no such layer; its top-level layers: {stages}.")
    frozen = []
    for layer in target.layers[:first]:
        layer.trainable = False
        if layer.weights:
            frozen.append(layer.name)
    return frozen


def start_from(networks, path, train_from=""):
    """``--pretrained`` and ``--train_from``: every network starts from ``path``, frozen up to ``train_from``.

    Args:
        networks: the method's target networks (both DML peers, ...).
        path: see :func:`pretrained_network`.
        train_from: first trained stage (see :func:`freeze_before`); empty trains every layer.
    """
    pretrained = pretrained_network(path)
    for network in networks:
        load_pretrained(network, pretrained)
        if train_from:
            frozen = freeze_before(network, train_from)
            logging.info("%s: %d layers frozen before %s.", network.name, len(frozen), train_from)
