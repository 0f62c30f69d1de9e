"""Converts a torchvision-layout ResNet (e.g. CSAIL Places365) or Hara 3D ResNet (Kinetics) checkpoint to Keras.

    python tools/convert_torch_resnet.py --checkpoint resnet50_places365.pth.tar \
        --arch resnet50 --num_classes 365 --output ~/.keras/models/resnet50_places365.keras
    python tools/convert_torch_resnet.py --checkpoint resnet-18-kinetics.pth --output resnet3d18_kinetics.keras

Reads .pth/.pth.tar files written by torch.save, without torch (a bare state dict or one under
"state_dict", with or without DataParallel's "module." prefix) or a .npz of the
same arrays. Writes, by the suffix of --output:
  .keras        the complete Keras model (input: preprocessed NHWC images, or raw
                [0, 255] pixels with --raw_pixels; a 3D ResNet takes raw clips
                [batch, T, H, W, 3] and subtracts Hara's mean itself); same logits as the torch model
  .weights.h5   its weights only (sskt_tf.sources.torch_checkpoint.build_for(arch, classes) loads them)
  .npz          the state dict as numpy arrays
"""

from absl import app, flags

from sskt_tf.cli.tool import parse_flags_or_exit, run_tool
from sskt_tf.sources import torch_checkpoint

flags.DEFINE_string("checkpoint", None, "PyTorch checkpoint (.pth, .pth.tar, .pt) or .npz state dict to convert.")
flags.DEFINE_string(
    "arch",
    "",
    f"Architecture: {', '.join(torch_checkpoint.ALL_ARCHS)} (Hara's resnet-18 spelling too). "
    "Empty = infer it from the checkpoint.",
)
flags.DEFINE_integer("num_classes", 0, "Expected class count (365 for Places365); 0 = the checkpoint's.")
flags.DEFINE_string(
    "output", None, f"Output file; its suffix picks the format: {', '.join(torch_checkpoint.OUTPUT_SUFFIXES)}."
)
flags.DEFINE_bool(
    "raw_pixels",
    False,
    "Put torchvision's preprocessing inside the .keras model, so it takes RGB pixels in "
    "[0, 255] and can be passed as --sources=PATH to tools/train.py.",
)
flags.DEFINE_bool(
    "trust_pickle",
    False,
    "Read the checkpoint with torch's full unpickler, which builds any object in it "
    "(needs torch; only for checkpoints you trust).",
)
flags.DEFINE_bool("overwrite", False, "Replace --output if it exists.")
flags.mark_flags_as_required(["checkpoint", "output"])


def main(argv):
    config = flags.FLAGS
    print(
        run_tool(
            argv,
            lambda: torch_checkpoint.convert_file(
                config.checkpoint,
                config.output,
                arch=config.arch,
                num_classes=config.num_classes,
                raw_pixels=config.raw_pixels,
                trust_pickle=config.trust_pickle,
                overwrite=config.overwrite,
            ),
        )
    )


def run():
    """The console script's entry point: parses the flags and runs :func:`main`."""
    app.run(main, flags_parser=parse_flags_or_exit)


if __name__ == "__main__":
    run()
