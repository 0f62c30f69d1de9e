"""PyTorch checkpoints of torchvision-layout 2D ResNets and Hara-layout 3D ResNets, read into Keras models.

Places365 networks exist only as PyTorch checkpoints (the CSAIL files
``resnet18_places365.pth.tar`` and ``resnet50_places365.pth.tar``: a dict whose
``state_dict`` has ``module.``-prefixed torchvision ResNet keys), and so do the
Kinetics-400 3D ResNets the paper fine-tunes (Hara et al.'s
``resnet-18-kinetics.pth``: ``arch``, ``state_dict`` with ``module.``-prefixed
keys, conv weights ``[O, I, T, H, W]``). This module reads such a state dict and
copies it into the Keras network of :mod:`sskt_tf.targets.torchvision_resnet`
or :mod:`sskt_tf.targets.resnet3d`, whose layers carry the torch module names,
so that both frameworks give the same logits.
"""

import os
import warnings

import keras
import numpy as np

from sskt_tf.errors import ConfigError
from sskt_tf.sources import torch_pickle
from sskt_tf.sources.files import load_keras_file
from sskt_tf.targets.resnet3d import BLOCKS as RESNET3D_BLOCKS
from sskt_tf.targets.resnet3d import resnet3d
from sskt_tf.targets.torchvision_resnet import ARCHS, build, with_raw_pixel_input
from sskt_tf.targets.torchvision_resnet import arch_key as torchvision_arch_key

# Hara-layout 3D ResNets (``resnet3d18``, ...): they take raw clips, mean subtraction inside.
ARCHS_3D = tuple(f"resnet3d{depth}" for depth in RESNET3D_BLOCKS)
ALL_ARCHS = (*ARCHS, *ARCHS_3D)

_TORCH_SUFFIXES = (".pth", ".pth.tar", ".pt", ".tar", ".bin", ".ckpt")


OUTPUT_SUFFIXES = (".keras", ".weights.h5", ".npz")


# Keys under which training scripts keep the state dict (CSAIL: "state_dict"; torchvision
# reference scripts: "model").
_STATE_DICT_WRAPPERS = ("state_dict", "model", "model_state_dict")
_TRUST_HINT = (
    "\nIf you trust its origin, convert it with full unpickling (needs torch: pip install torch): "
    "python tools/convert_torch_resnet.py --checkpoint {path} --trust_pickle --output OUT.keras "
    "(trust_pickle=True in Python)."
)


def _torch_load(path):
    """``torch.load`` with full unpickling, for a checkpoint the user trusts."""
    try:
        import torch
    except ImportError as error:
        raise ConfigError(
            f"--trust_pickle reads {path!r} with torch's full unpickler, and torch is not installed: "
            'pip install -e ".[convert]" (or pip install torch).'
        ) from error
    try:
        with warnings.catch_warnings():
            # torch warns that `encoding` is for full unpickling only, yet passes it on.
            warnings.filterwarnings("ignore", message="pickle_load_args only works")
            # latin1 decodes checkpoints pickled by Python 2 (the CSAIL files are from 2017).
            return torch.load(path, map_location="cpu", weights_only=False, encoding="latin1")
    except Exception as error:
        raise ConfigError(f"Could not read PyTorch checkpoint {path!r}: {str(error).strip().rstrip('.')}.") from error


def _read_checkpoint(path, trust_pickle):
    """The object a ``torch.save`` file holds: read without torch, or with it when trusted."""
    if trust_pickle:
        return _torch_load(path)
    try:
        return torch_pickle.load(path)
    except torch_pickle.UntrustedObjectError as error:
        raise ConfigError(f"{error}{_TRUST_HINT.format(path=path)}") from error


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch.Tensor (from --trust_pickle)
        value = value.detach().cpu().float().numpy()
    return np.asarray(value)


def read_state_dict(path, trust_pickle=False):
    """Reads a torchvision-layout state dict from a checkpoint file.

    Accepts ``.pth``/``.pth.tar``/``.pt`` files written by ``torch.save`` in its
    zip or its legacy (pre-1.6) format, read without torch by
    :mod:`sskt_tf.sources.torch_pickle` (a bare state dict or a dict holding one
    under ``state_dict``, ``model`` or ``model_state_dict``, keys with or without
    the ``module.`` prefix of ``DataParallel``; non-tensor entries are ignored),
    and ``.npz`` files of the same arrays.

    Args:
        path: the checkpoint file.
        trust_pickle: read the file with torch's full unpickler, which builds
            any object it holds (needs torch; only for files you trust). By
            default only tensors and plain containers are read, without torch.

    Returns:
        ``{torch key without "module.": float32 numpy array}``, without the
        ``num_batches_tracked`` counters.
    """
    if not os.path.exists(path):
        raise ConfigError(f"Checkpoint {path!r} does not exist.")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                state = {name: archive[name] for name in archive.files}
        except Exception as error:
            raise ConfigError(f"Could not read {path!r} as a .npz of arrays: {error}") from error
    elif path.endswith(_TORCH_SUFFIXES):
        state = _read_checkpoint(path, trust_pickle)
    else:
        raise ConfigError(
            f"Unknown checkpoint format {path!r}: use a PyTorch {'/'.join(_TORCH_SUFFIXES)} file or a .npz."
        )
    if isinstance(state, dict):
        for wrapper in _STATE_DICT_WRAPPERS:
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    arrays = {}
    if isinstance(state, dict):
        # Tensors only: training scripts store epochs, names and scores beside them.
        arrays = {
            (key[len("module.") :] if key.startswith("module.") else key): _to_numpy(value).astype(np.float32)
            for key, value in state.items()
            if hasattr(value, "shape") and not key.endswith("num_batches_tracked")
        }
    if not arrays:
        raise ConfigError(
            f"Checkpoint {path!r} holds no state dict (expected a dict of tensors, or one under "
            f"{' or '.join(repr(w) for w in _STATE_DICT_WRAPPERS)})."
        )
    return arrays


def arch_key(arch):
    """The canonical name of ``arch`` (``ALL_ARCHS``); a ConfigError naming the choices if it is unknown."""
    key = str(arch).lower().replace("resnet-", "resnet3d")  # Hara's checkpoints say "resnet-18"
    if key not in ALL_ARCHS:
        raise ConfigError(f"Unknown architecture {arch!r}; choose one of {', '.join(ALL_ARCHS)}.")
    return key


def infer_arch(state):
    """The architecture whose layout ``state`` has, or None.

    Args:
        state: a state dict from :func:`read_state_dict`.

    Returns:
        ``"resnet18"`` .. ``"resnet152"`` (torchvision), ``"resnet3d10"`` ..
        ``"resnet3d34"`` (Hara, 5-D conv weights), or None for an unknown layout.
    """
    kind = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    blocks = []
    for stage in range(1, 5):
        indices = {
            key.split(".")[1] for key in state if key.startswith(f"layer{stage}.") and key.endswith(".conv1.weight")
        }
        blocks.append(len(indices))
    if np.ndim(state.get("conv1.weight")) == 5:
        depths = [depth for depth, layout in RESNET3D_BLOCKS.items() if layout == tuple(blocks)]
        return f"resnet3d{depths[0]}" if kind == "basic" and depths else None
    for name, layout in ARCHS.items():
        if layout == (kind, tuple(blocks)):
            return name
    return None


def infer_shortcut(state):
    """A 3D ResNet state dict's shortcut type: ``"B"`` if it has downsample convs, else ``"A"``."""
    return "B" if any(".downsample." in key for key in state) else "A"


def _torch_weights_of(layer):
    """``[(torch key, numpy array -> Keras weight)]`` for one layer of a torch-named model."""
    name = layer.name
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # torch [C, 1, kh, kw] -> Keras [kh, kw, C, 1]
        return [(f"{name}.weight", lambda w: np.transpose(w, (2, 3, 0, 1)))]
    if isinstance(layer, keras.layers.Conv2D):
        return [(f"{name}.weight", lambda w: np.transpose(w, (2, 3, 1, 0)))]
    if isinstance(layer, keras.layers.Conv3D):
        return [(f"{name}.weight", lambda w: np.transpose(w, (2, 3, 4, 1, 0)))]
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(f"{name}.{key}", lambda w: w) for key in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, keras.layers.Dense):
        return [(f"{name}.weight", np.transpose), (f"{name}.bias", lambda w: w)]
    return []


def _examples(keys, limit=3):
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def copy_torch_weights(model, state, source, layout, classifier, hint=""):
    """Copies a torch state dict into a Keras model whose layers carry the torch module names.

    Args:
        model: the Keras model (Conv2D/3D, DepthwiseConv2D, BatchNormalization
            and Dense layers named after their torch modules).
        state: ``{torch key: array}`` from :func:`read_state_dict`.
        source: how to name the checkpoint in error messages.
        layout: how to name the model in error messages (``"torchvision resnet18"``).
        classifier: the torch name of the final linear layer (its rows are the classes).
        hint: appended to the message about missing or unexpected keys.

    Raises:
        ConfigError: keys missing or unexpected, a different class count, or a shape mismatch.
    """
    plan = [(layer, _torch_weights_of(layer)) for layer in model.layers]
    expected = {key for _, weights in plan for key, _ in weights}
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"{len(missing)} keys missing ({_examples(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_examples(unexpected)})")
        raise ConfigError(f"{source} does not match a {layout}: {'; '.join(problems)}.{hint}")
    classes = state[f"{classifier}.weight"].shape[0]
    if classes != model.output_shape[-1]:
        raise ConfigError(f"{source} has {classes} classes, but a model with {model.output_shape[-1]} was asked for.")
    for layer, weights in plan:
        if not weights:
            continue
        values = [to_keras(state[key]) for key, to_keras in weights]
        for (key, _), value, variable in zip(weights, values, layer.weights):
            if tuple(value.shape) != tuple(variable.shape):
                raise ConfigError(
                    f"{source}: {key} has shape {tuple(state[key].shape)}, which does not fit {model.name}'s "
                    f"{layer.name} (Keras shape {tuple(variable.shape)})."
                )
        layer.set_weights(values)


def assign(model, state, source="checkpoint"):
    """Copies a ResNet state dict into a model with torch module names (:func:`build_for`).

    Args:
        model: the Keras model.
        state: ``{torch key: array}`` from :func:`read_state_dict`.
        source: how to name the checkpoint in error messages.

    Raises:
        ConfigError: see :func:`copy_torch_weights`; a key mismatch names the
            architecture the checkpoint looks like.
    """
    found = infer_arch(state)
    hint = ""
    if found and found != model.name:
        use = "" if found in ARCHS_3D else f"; training: --sources=places365/{found}"
        hint = f" It looks like a {found} checkpoint (converter: --arch={found}{use})."
    family = "Hara-layout" if model.name in ARCHS_3D else "torchvision"
    copy_torch_weights(model, state, source, f"{family} {model.name}", classifier="fc", hint=hint)


def convert(checkpoint, arch=None, num_classes=None, trust_pickle=False):
    """A Keras model with the weights of a torchvision-layout ResNet checkpoint.

    Args:
        checkpoint: ``.pth``/``.pth.tar``/``.npz`` file (see :func:`read_state_dict`).
        arch: expected architecture; None infers it from the checkpoint.
        num_classes: expected class count; None takes the checkpoint's.
        trust_pickle: see :func:`read_state_dict`.

    Returns:
        The Keras model (see :func:`build_for`), same logits as the torch network.
    """
    state = read_state_dict(checkpoint, trust_pickle=trust_pickle)
    return model_from_state(state, arch, num_classes, source=f"Checkpoint {checkpoint!r}")


def model_from_state(state, arch=None, num_classes=None, source="checkpoint"):
    """Builds the Keras model for a state dict and copies the weights in.

    Args:
        state: ``{torch key: array}`` from :func:`read_state_dict`.
        arch: expected architecture; None infers it.
        num_classes: expected class count; None takes the state dict's.
        source: how to name the checkpoint in error messages.

    Returns:
        The Keras model (see :func:`build_for`).
    """
    if arch is None:
        arch = infer_arch(state)
        if arch is None:
            raise ConfigError(
                f"{source} is neither a torchvision ResNet ({', '.join(ARCHS)}) nor a Hara 3D ResNet "
                f"({', '.join(ARCHS_3D)}) layout."
            )
    if "fc.weight" not in state:
        raise ConfigError(f"{source} has no fc.weight: it is not a ResNet classifier.")
    model = build_for(arch_key(arch), num_classes or state["fc.weight"].shape[0], infer_shortcut(state))
    assign(model, state, source=source)
    return model


def build_for(arch, num_classes, shortcut="A"):
    """The Keras network a checkpoint of ``arch`` converts into, with random weights.

    Args:
        arch: one of ``ALL_ARCHS``.
        num_classes: size of ``fc``.
        shortcut: the 3D ResNets' shortcut type (see :func:`infer_shortcut`).

    Returns:
        torchvision ResNets: :func:`sskt_tf.targets.torchvision_resnet.build`
        (preprocessed images in); 3D ResNets: :func:`sskt_tf.targets.resnet3d.resnet3d`
        on clips of any size (raw pixels in, the original's mean subtracted inside).
    """
    if arch in ARCHS_3D:
        depth = int(arch[len("resnet3d") :])
        return resnet3d(depth, num_classes, input_shape=(None, None, None, 3), shortcut=shortcut)
    return build(arch, num_classes)


def load(path, arch, num_classes, trust_pickle=False):
    """A Keras torchvision-layout ResNet from a converted or a PyTorch file.

    Args:
        path: a converted ``.keras`` model or ``.weights.h5`` file (from
            ``tools/convert_torch_resnet.py``), or a checkpoint for :func:`convert`.
        arch: the architecture the caller expects.
        num_classes: the class count the caller expects.
        trust_pickle: see :func:`read_state_dict`.

    Returns:
        The Keras model.
    """
    key = torchvision_arch_key(arch)
    if not os.path.exists(path):
        raise ConfigError(f"Weights file {path!r} for {key} does not exist.")
    if path.endswith(".keras"):
        model = load_keras_file(path, f"Converted {key} file")
        if model.name in ARCHS and model.name != key:
            raise ConfigError(f"{path!r} holds a {model.name}, not a {key}.")
        if any(layer.name == "torch_preprocessing" for layer in model.layers):
            raise ConfigError(
                f"{path!r} was converted with --raw_pixels and preprocesses its input itself; "
                "use it as a source file (--sources=PATH) or convert again without --raw_pixels."
            )
    elif path.endswith(".weights.h5"):
        model = build(key, num_classes)
        try:
            model.load_weights(path)
        except Exception as error:
            raise ConfigError(f"Could not load {path!r} into a {key} with {num_classes} classes: {error}") from error
    else:
        model = convert(path, key, num_classes, trust_pickle=trust_pickle)
    if model.output_shape[-1] != num_classes:
        raise ConfigError(f"{path!r} predicts {model.output_shape[-1]} classes, expected {num_classes}.")
    return model


def _check_output(path, raw_pixels, overwrite):
    if not path.endswith(OUTPUT_SUFFIXES):
        raise ConfigError(f"--output={path} must end in one of {', '.join(OUTPUT_SUFFIXES)}.")
    if raw_pixels and not path.endswith(".keras"):
        raise ConfigError("--raw_pixels needs a .keras --output (a weights file has no layers to hold it).")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"--output={path} exists; pass --overwrite to replace it.")


def _save(model, output, raw_pixels):
    if raw_pixels:
        model = with_raw_pixel_input(model)
    if output.endswith(".keras"):
        model.save(output)
    else:
        model.save_weights(output)


def convert_file(
    checkpoint, output, arch=None, num_classes=None, raw_pixels=False, trust_pickle=False, overwrite=False
):
    """Converts a checkpoint file into a Keras file (``tools/convert_torch_resnet.py``).

    Args:
        checkpoint: see :func:`read_state_dict`.
        output: ``.keras`` (complete model), ``.weights.h5`` (weights for
            :func:`build_for`) or ``.npz`` (the state dict, for later conversion
            without torch).
        arch: expected architecture; None infers it.
        num_classes: expected class count; None takes the checkpoint's.
        raw_pixels: wrap the ``.keras`` model with :func:`with_raw_pixel_input`.
        trust_pickle: see :func:`read_state_dict`.
        overwrite: replace an existing ``output``.

    Returns:
        A one-line summary of what was written.
    """
    checkpoint, output = os.path.expanduser(checkpoint), os.path.expanduser(output)
    arch = arch_key(arch) if arch else None
    if num_classes is not None and num_classes < 0:
        raise ConfigError(f"--num_classes must be >= 0 (0 = the checkpoint's), got {num_classes}.")
    _check_output(output, raw_pixels, overwrite)
    state = read_state_dict(checkpoint, trust_pickle=trust_pickle)
    if output.endswith(".npz") and not (arch or num_classes):
        model = None  # nothing to check the arrays against
    else:
        model = model_from_state(state, arch, num_classes or None, source=f"Checkpoint {checkpoint!r}")
        if raw_pixels and model.name in ARCHS_3D:
            raise ConfigError(f"--raw_pixels is for 2D ResNets: a converted {model.name} takes raw clips already.")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        if output.endswith(".npz"):
            np.savez(output, **state)
            return f"Wrote the {len(state)} arrays of {checkpoint} to {output}."
        _save(model, output, raw_pixels)
    except OSError as error:
        raise ConfigError(f"Could not write --output={output}: {error}") from error
    summary = f"{model.name}, {model.output_shape[-1]} classes, {model.count_params():,} parameters"
    return f"Converted {checkpoint} ({summary}) to {output}."
