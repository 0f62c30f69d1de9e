"""Training throughput of scratch, online SSKT and cached SSKT, with XLA on and off.

    python benchmarks/benchmark.py                                   # every Keras configuration
    python benchmarks/benchmark.py --configs=scratch,sskt_cached --steps=50 --jit_compile=false
    python benchmarks/benchmark.py --configs=torch_scratch,torch_sskt_online_2   # the PyTorch reference
    python benchmarks/benchmark.py --configs=scratch,sskt_cached --head=linear  # linear heads
    python benchmarks/benchmark.py --configs=video_scratch,video_sskt_online_2,torch_video_scratch,\
        torch_video_sskt_online_2 --batch_size=8 --num_classes=101        # the video step (3D ResNet-18)
    python benchmarks/benchmark.py --configs=inference --target=efficientnet_lite0 --batch_size=1 \
        --jit_compile=false --num_classes=5                               # a target's inference cost

Prints one JSON line per (configuration, XLA, precision): config, jit_compile,
mixed_precision, batch_size, images_per_second (clips per second for the video
configurations: ``examples`` says which), step_ms, peak_memory_mb, device, ...
Each measurement runs in its own process, so peak memory is its own. Synthetic batches,
random weights: the input pipeline and the weights do not affect these numbers. Runs
unchanged on CPUs and GPUs. --markdown also prints the table docs/performance.md shows.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import training_steps as benchmark  # noqa: E402

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool  # noqa: E402

flags.DEFINE_list("configs", list(benchmark.KERAS_CONFIGS), f"Configurations: {', '.join(benchmark.CONFIGS)}.")
flags.DEFINE_list("jit_compile", ["false", "true"], "XLA settings to measure (Keras configurations): false, true.")
flags.DEFINE_list("mixed_precision", ["float32"], "Dtype policies to measure: float32, mixed_float16, mixed_bfloat16.")
flags.DEFINE_integer("steps", 20, "Timed training steps per measurement.", lower_bound=1)
flags.DEFINE_integer("warmup", 3, "Untimed steps first (tracing, XLA compilation, autotuning).", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Images per step.", lower_bound=1)
flags.DEFINE_string("target", "resnet20", "Target network.")
flags.DEFINE_enum("head", "transfer", ["transfer", "linear"], "Auxiliary head of the SSKT configurations (Keras).")
flags.DEFINE_integer("image_size", 32, "Target image side length.", lower_bound=8)
flags.DEFINE_integer("num_classes", 10, "Target classes.", lower_bound=2)
flags.DEFINE_list(
    "sources",
    ["imagenet/resnet50", "places365/resnet50"],
    "Source specs (random weights); the *_1 configurations use the first, the others the first two.",
)
flags.DEFINE_string("source_scale", "7/3", "The sources' resize factor (32 -> 74).")
flags.DEFINE_integer("clip_length", 16, "Video configurations: frames a clip.", lower_bound=1)
flags.DEFINE_integer("clip_size", 112, "Video configurations: clip side length.", lower_bound=16)
flags.DEFINE_integer("video_source_size", 224, "Video configurations: the side the sources see.", lower_bound=16)
flags.DEFINE_integer("intra_op_threads", 0, "TensorFlow intra-op threads; 0 = TensorFlow's default.", lower_bound=0)
flags.DEFINE_integer("inter_op_threads", 0, "TensorFlow inter-op threads; 0 = TensorFlow's default.", lower_bound=0)
flags.DEFINE_string("output", "", "Also append the JSON lines to this file.")
flags.DEFINE_bool("markdown", False, "Print a markdown table of the results at the end.")
flags.DEFINE_bool("child", False, "Internal: measure exactly one configuration in this process.")

_FORWARDED = (
    "steps",
    "warmup",
    "batch_size",
    "target",
    "head",
    "image_size",
    "num_classes",
    "source_scale",
    "clip_length",
    "clip_size",
    "video_source_size",
    "intra_op_threads",
    "inter_op_threads",
)


def _measure_here(values):
    import tensorflow as tf

    if values.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(values.intra_op_threads)
    if values.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(values.inter_op_threads)
    (config,), (jit,), (policy,) = values.configs, values.jit_compile, values.mixed_precision
    result = benchmark.run(
        config,
        values.sources,
        jit_compile=jit == "true",
        mixed_precision=policy,
        steps=values.steps,
        warmup=values.warmup,
        batch_size=values.batch_size,
        target=values.target,
        image_size=values.image_size,
        num_classes=values.num_classes,
        source_scale=values.source_scale,
        head=values.head,
        video_shape=dict(
            clip_length=values.clip_length, clip_size=values.clip_size, video_source_size=values.video_source_size
        ),
    )
    result.update(intra_op_threads=values.intra_op_threads, inter_op_threads=values.inter_op_threads)
    print(json.dumps(result, sort_keys=True))


def _measurements(values):
    """``(config, jit, policy)`` triples to measure; PyTorch ones once each."""
    for config in values.configs:
        if config not in benchmark.CONFIGS:
            raise flags.ValidationError(
                f"Unknown --configs entry {config!r}; choose from {', '.join(benchmark.CONFIGS)}."
            )
        if config in benchmark.TORCH_CONFIGS + benchmark.TORCH_VIDEO_CONFIGS:
            yield config, "false", "float32"
            continue
        for policy in values.mixed_precision:
            for jit in values.jit_compile:
                if jit not in ("false", "true"):
                    raise flags.ValidationError(f"--jit_compile takes false and/or true, got {jit!r}.")
                yield config, jit, policy


def _measure_in_child(values, config, jit, policy):
    args = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"--configs={config}",
        f"--jit_compile={jit}",
        f"--mixed_precision={policy}",
        f"--sources={','.join(values.sources)}",
    ]
    args += [f"--{name}={values[name].value}" for name in _FORWARDED]
    done = subprocess.run(args, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(config=config, jit_compile=jit == "true", mixed_precision=policy, error=error)
    return json.loads(lines[-1])


def markdown_table(results):
    """The results as the markdown table in docs/performance.md."""
    rows = [
        "| configuration | XLA | precision | images (clips)/s | step (ms) | peak memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            rows.append(
                f"| {r['config']} | {'on' if r['jit_compile'] else 'off'} | {r['mixed_precision']} "
                f"| failed: {r['error']} | | |"
            )
        else:
            rows.append(
                f"| {r['config']} | {'on' if r['jit_compile'] else 'off'} | {r['mixed_precision']} | "
                f"{r['images_per_second']:.1f} | {r['step_ms']:.0f} | {r['peak_memory_mb']:.0f} |"
            )
    return "\n".join(rows)


def main(argv):
    values = flags.FLAGS
    if values.child:
        run_tool(argv, lambda: _measure_here(values))
        return
    results = []
    for config, jit, policy in run_tool(argv, lambda: list(_measurements(values))):
        result = _measure_in_child(values, config, jit, policy)
        results.append(result)
        line = json.dumps(result, sort_keys=True)
        print(line, flush=True)
        if values.output:
            with open(values.output, "a") as f:
                f.write(line + "\n")
    if values.markdown:
        print(markdown_table(results))
    if any("error" in result for result in results):
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
