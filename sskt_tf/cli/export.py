"""Exports a run's target for serving: a SavedModel for TF Serving, or TFLite.

    python tools/export.py --model_dir runs/cifar10-resnet20-sskt --export_dir export/sskt
    python tools/export.py --model_dir runs/cifar10-resnet20-sskt --export_dir export/sskt_tflite \
        --format=tflite --quantize=int8

SavedModels go to <export_dir>/<version>/ (TF Serving's layout) and hold the target
alone, with a `serving_default` signature taking uint8 `images` [batch, H, W, 3] and
returning `probabilities`, `classes` and `logits`, and a `serving_image_bytes` signature
taking encoded JPEG/PNG `image_bytes`. TFLite files go to <export_dir>/<version>/model.tflite
with tflite_eval.json: the Keras and the TFLite model's validation accuracy.
"""

import json

from absl import app, flags

from sskt_tf import training
from sskt_tf.cli.tool import parse_flags_or_exit, run_tool
from sskt_tf.training import export as export_lib

flags.DEFINE_string("model_dir", None, "The training run's --model_dir (holds best.keras, last.keras, flags.txt).")
flags.DEFINE_string("export_dir", None, "Base export directory; the export goes to <export_dir>/<version>/.")
flags.DEFINE_integer(
    "version", 0, "Version number (a positive integer); 0 = one more than the largest present.", lower_bound=0
)
flags.DEFINE_enum("checkpoint", "best", ["best", "last"], "Which target to export: best.keras or last.keras.")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "saved_model (TF Serving) or tflite.")
flags.DEFINE_enum(
    "quantize",
    "none",
    list(export_lib.TFLITE_QUANTIZATIONS),
    "TFLite quantization: none (float32), "
    "float16 (weights), int8 (weights and activations, calibrated on training images).",
)
flags.DEFINE_bool(
    "evaluate", True, "For TFLite: report the Keras and TFLite validation accuracy (loads the run's data)."
)
flags.DEFINE_integer("representative_examples", 200, "Training images that calibrate --quantize=int8.", lower_bound=1)
flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    config = flags.FLAGS
    result = run_tool(
        argv,
        lambda: training.export_run(
            config.model_dir,
            config.export_dir,
            version=config.version or None,
            checkpoint=config.checkpoint,
            export_format=config.format,
            quantize=config.quantize,
            evaluate=config.evaluate,
            representative_examples=config.representative_examples,
        ),
    )
    print(json.dumps(result, sort_keys=True))


def run():
    """The console script's entry point: parses the flags and runs :func:`main`."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
