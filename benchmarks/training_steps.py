"""Training-step throughput of SSKT configurations on synthetic batches (``benchmarks/benchmark.py``).

Configurations:

* ``scratch``: the target alone (no sources, no heads).
* ``sskt_online_1`` / ``sskt_online_2``: the target with the first one / two
  sources running inside every step, one auxiliary head each (transfer
  modules unless ``head="linear"``).
* ``sskt_cached`` / ``sskt_cached_1``: the same heads as ``sskt_online_2`` /
  ``sskt_online_1``, with the soft labels arriving with the batch, as they do
  from a soft-label cache.
* ``torch_scratch`` / ``torch_sskt_online_2``: the original method's step in
  eager PyTorch (:class:`torch_reference.SSKTStep`), on the same
  machine, for comparison.
* ``video_scratch`` / ``video_sskt_online_2``: the paper's video step, a 3D
  ResNet-18 on clips ``[batch, clip_length, clip_size, clip_size, 3]``, alone or
  with two sources on each clip's centre frame at ``video_source_size`` and a 3D
  transfer module each; ``torch_video_scratch`` / ``torch_video_sskt_online_2``:
  the same step in eager PyTorch (:class:`torch_resnet3d.VideoSSKTStep`).

Each measurement runs the train function ``fit`` uses (or the PyTorch step)
for ``warmup`` steps, which include tracing and compilation, then times
``steps`` steps on one fixed synthetic batch, so the input pipeline is not
measured.
"""

import os
import platform
import resource
import time

import keras
import numpy as np
import tensorflow as tf

from sskt_tf import soft_labels
from sskt_tf import sources as sources_lib
from sskt_tf import targets as targets_lib
from sskt_tf.errors import ConfigError
from sskt_tf.methods.sskt import SSKTModel
from sskt_tf.sources.spec import parse_spec

KERAS_CONFIGS = ("scratch", "sskt_online_1", "sskt_online_2", "sskt_cached", "sskt_cached_1")
VIDEO_CONFIGS = ("video_scratch", "video_sskt_online_2")
TORCH_CONFIGS = ("torch_scratch", "torch_sskt_online_2")
TORCH_VIDEO_CONFIGS = ("torch_video_scratch", "torch_video_sskt_online_2")
# The target alone in inference mode (what a deployment runs): images per second of the forward pass.
INFERENCE_CONFIGS = ("inference",)
CONFIGS = KERAS_CONFIGS + VIDEO_CONFIGS + TORCH_CONFIGS + TORCH_VIDEO_CONFIGS + INFERENCE_CONFIGS
# The video configurations' clips and source size (the paper's): --clip_length, --clip_size, --video_source_size.
VIDEO_SHAPE = dict(clip_length=16, clip_size=112, video_source_size=224)
_SOURCE_COUNT = {
    "scratch": 0,
    "sskt_online_1": 1,
    "sskt_online_2": 2,
    "sskt_cached": 2,
    "sskt_cached_1": 1,
    "torch_scratch": 0,
    "torch_sskt_online_2": 2,
    "video_scratch": 0,
    "video_sskt_online_2": 2,
    "torch_video_scratch": 0,
    "torch_video_sskt_online_2": 2,
    "inference": 0,
}


def device_name():
    """The GPU's name if TensorFlow sees one, else the CPU's model and core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{details.get('device_name', 'GPU')} x{len(gpus)}"
    model = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def peak_memory_mb():
    """Peak GPU memory of TensorFlow's first GPU, else the process's peak resident memory, in MiB."""
    if tf.config.list_physical_devices("GPU"):
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _source_classes(spec):
    """Class count of a source spec, without building a network whose family knows it."""
    family, _ = parse_spec(spec)
    return family.num_classes or sources_lib.from_file(spec).num_classes


def build_keras_step(
    config,
    source_specs,
    target="resnet20",
    image_size=32,
    num_classes=10,
    source_scale="7/3",
    batch_size=128,
    jit_compile=False,
    head="transfer",
    video_shape=None,
):
    """A compiled model and one synthetic batch for a Keras configuration.

    Args:
        config: one of :data:`KERAS_CONFIGS`.
        source_specs: source specs (``imagenet/resnet50``, ...); random weights.
        target: target network name.
        image_size: target image side length.
        num_classes: target classes.
        source_scale: the sources' resize factor.
        batch_size: images per step.
        jit_compile: compile the step with XLA.
        head: auxiliary head kind, ``transfer`` or ``linear``.
        video_shape: ``clip_length``, ``clip_size`` and ``video_source_size``
            of the video configurations (default :data:`VIDEO_SHAPE`).

    Returns:
        ``(model, batch)``.
    """
    if config in VIDEO_CONFIGS:
        return _build_video_step(config, source_specs, num_classes, batch_size, jit_compile, video_shape or VIDEO_SHAPE)
    count = _SOURCE_COUNT[config]
    if len(source_specs) < count:
        raise ConfigError(f"{config} needs {count} source(s); --sources names {len(source_specs)}.")
    specs = source_specs[:count]
    scale = sources_lib.parse_scale(source_scale)
    cached = config.startswith("sskt_cached")
    if cached:
        sources = [soft_labels.CachedSource(_source_classes(spec), name=f"source{i}") for i, spec in enumerate(specs)]
    else:
        sources = [sources_lib.from_spec(spec, image_size, scale=scale, weights=None) for spec in specs]
    model = SSKTModel(targets_lib.get(target, num_classes, image_size=image_size), sources, head=head)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), weight_decay=5e-4, jit_compile=jit_compile)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size)
    if cached:
        soft = tuple(rng.normal(0, 3, (batch_size, s.num_classes)).astype("float32") for s in sources)
        return model, ({"images": images, "soft_labels": soft}, labels)
    return model, (images, labels)


def _build_video_step(config, source_specs, num_classes, batch_size, jit_compile, shape):
    """:func:`build_keras_step` for the video configurations: 3D ResNet-18, sources on the centre frame."""
    size, length = shape["clip_size"], shape["clip_length"]
    specs = source_specs[: _SOURCE_COUNT[config]]
    sources = [
        sources_lib.from_spec(spec, size, source_image_size=shape["video_source_size"], weights=None) for spec in specs
    ]
    target = targets_lib.get("resnet3d18", num_classes, image_size=size, frames=length)
    model = SSKTModel(target, sources)
    model.compile(
        keras.optimizers.SGD(0.001, momentum=0.9),
        weight_decay=1e-3,
        aux_loss="soft_ce",
        alpha=1.0,
        temperature=1.0,
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(0)
    clips = rng.uniform(0, 255, (batch_size, length, size, size, 3)).astype("float32")
    return model, (clips, rng.integers(0, num_classes, batch_size))


def time_keras_step(model, batch, steps, warmup):
    """Seconds per training step of ``model`` on ``batch`` (after ``warmup`` steps)."""
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    model.make_train_function()
    train_function = model.train_function
    for _ in range(warmup):
        logs = train_function(iterator)
    float(logs["loss"])
    start = time.perf_counter()
    for _ in range(steps):
        logs = train_function(iterator)
    float(logs["loss"])  # waits for the device
    return (time.perf_counter() - start) / steps


def time_keras_inference(target, batch_size, image_size, steps, warmup, jit_compile):
    """Seconds per forward pass of ``target`` (inference mode) on a synthetic batch of raw images.

    Args:
        target: a target network (raw pixels in, logits out).
        batch_size: images per pass (1: the latency of one image).
        image_size: the side of the images it is given (it may resize inside, as EfficientNet-Lite does).
        steps: timed passes.
        warmup: untimed passes first (tracing, XLA compilation).
        jit_compile: compile the pass with XLA.

    Returns:
        Seconds per pass.
    """
    images = tf.constant(np.random.default_rng(0).uniform(0, 255, (batch_size, image_size, image_size, 3)), tf.float32)
    forward = tf.function(lambda x: target(x, training=False), jit_compile=jit_compile)
    for _ in range(warmup):
        logits = forward(images)
    logits.numpy()
    start = time.perf_counter()
    for _ in range(steps):
        logits = forward(images)
    logits.numpy()  # waits for the device
    return (time.perf_counter() - start) / steps


def time_torch_step(
    config, source_specs, batch_size, image_size, num_classes, source_scale, steps, warmup, video_shape=None
):
    """Seconds per step of the eager PyTorch reference (CPU, all cores)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    classes = [("resnet50", _source_classes(spec)) for spec in source_specs[: _SOURCE_COUNT[config]]]
    if config in TORCH_VIDEO_CONFIGS:
        from torch_resnet3d import VideoSSKTStep

        shape = video_shape or VIDEO_SHAPE
        step = VideoSSKTStep(num_classes=num_classes, sources=classes, source_size=shape["video_source_size"])
        length, size = shape["clip_length"], shape["clip_size"]
        images = torch.randn(batch_size, 3, length, size, size) * 60.0
    else:
        from torch_reference import SSKTStep

        size = sources_lib.scaled_size(image_size, sources_lib.parse_scale(source_scale))
        step = SSKTStep(num_classes=num_classes, sources=classes, source_size=size)
        images = torch.randn(batch_size, 3, image_size, image_size)
    labels = torch.randint(0, num_classes, (batch_size,))
    for _ in range(warmup):
        step(images, labels)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(images, labels)
    float(loss)
    return (time.perf_counter() - start) / steps


def run(
    config,
    source_specs,
    jit_compile=False,
    mixed_precision="float32",
    steps=20,
    warmup=3,
    batch_size=128,
    target="resnet20",
    image_size=32,
    num_classes=10,
    source_scale="7/3",
    head="transfer",
    video_shape=None,
):
    """Measures one configuration; call once per process (peak memory is per process).

    Args:
        config: one of :data:`CONFIGS`.
        source_specs: source specs; the PyTorch configurations always use
            torchvision ResNet-50s with the specs' class counts.
        jit_compile: XLA (Keras configurations).
        mixed_precision: Keras dtype policy (Keras configurations).
        steps: timed steps.
        warmup: untimed steps first.
        batch_size: images per step.
        target: target network (PyTorch: always ResNet-20).
        image_size: target image side length.
        num_classes: target classes.
        source_scale: the sources' resize factor.
        head: auxiliary head kind, ``transfer`` or ``linear`` (PyTorch:
            always transfer modules).
        video_shape: see :func:`build_keras_step` (video configurations).

    Returns:
        The result dict: ``config``, ``jit_compile``, ``mixed_precision``,
        ``batch_size``, ``images_per_second``, ``step_ms``,
        ``peak_memory_mb``, ``head``, ``device``, ...
    """
    if config not in CONFIGS:
        raise ConfigError(f"Unknown benchmark configuration {config!r}; choose from {', '.join(CONFIGS)}.")
    video = config in VIDEO_CONFIGS + TORCH_VIDEO_CONFIGS
    if config in TORCH_CONFIGS + TORCH_VIDEO_CONFIGS:
        seconds = time_torch_step(
            config, source_specs, batch_size, image_size, num_classes, source_scale, steps, warmup, video_shape
        )
        framework, jit_compile, mixed_precision, target, head = "torch", False, "float32", "resnet20", "transfer"
    elif config in INFERENCE_CONFIGS:
        keras.mixed_precision.set_global_policy(mixed_precision)
        network = targets_lib.get(target, num_classes, image_size=image_size)
        seconds = time_keras_inference(network, batch_size, image_size, steps, warmup, jit_compile)
        framework, head = "keras", None
    else:
        keras.mixed_precision.set_global_policy(mixed_precision)
        model, batch = build_keras_step(
            config,
            source_specs,
            target,
            image_size,
            num_classes,
            source_scale,
            batch_size,
            jit_compile,
            head,
            video_shape,
        )
        seconds = time_keras_step(model, batch, steps, warmup)
        framework = "keras"
    if video:
        target, head = "resnet3d18", "transfer"
    return dict(
        config=config,
        framework=framework,
        jit_compile=bool(jit_compile),
        mixed_precision=mixed_precision,
        batch_size=batch_size,
        images_per_second=round(batch_size / seconds, 1),
        examples="clips" if video else "images",
        step_ms=round(seconds * 1000, 1),
        peak_memory_mb=round(peak_memory_mb(), 1),
        target=target,
        head=head if _SOURCE_COUNT[config] else None,
        sources=list(source_specs[: _SOURCE_COUNT[config]]),
        steps=steps,
        device=device_name(),
        **({"target_parameters": int(network.count_params())} if config in INFERENCE_CONFIGS else {}),
    )
