"""Bad input from the command line: one clear line, exit code 2, no traceback, no file touched."""

import os

import pytest
from absl import flags
from helpers.in_process import run_script
from helpers.processes import run_python

from sskt_tf.errors import ConfigError
from sskt_tf.training.flags import config_from_command_line, define_flags


def _snapshot(directory):
    """{relative path: bytes} of every file under ``directory``."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--lr=nan", "flag --lr=nan: must be a finite number > 0"),
        ("--temperature=inf", "flag --temperature=inf: must be a finite number > 0"),
        ("--image_size=1", "flag --image_size=1: must be 0 or >= 8"),
        ("--image_size=-5", "flag --image_size=-5: must be 0 or >= 8"),
        ("--steps_per_epoch=-1", "flag --steps_per_epoch=-1: must be >= 0"),
        ("--lr_milestones=30,30", "flag --lr_milestones=['30', '30']: must be in increasing order, each once"),
        ("--lr_milestones=60,30", "flag --lr_milestones=['60', '30']: must be in increasing order, each once"),
        ("--batch_size=0", "flag --batch_size=0: must be >= 1"),
        ("--alpha=-0.5", "flag --alpha=-0.5: must be >= 0"),
        ("--momentum=nan", "flag --momentum=nan: must be a finite number >= 0"),
    ],
)
def test_numbers_that_can_never_work_are_refused_while_parsing(flag, message):
    values = flags.FlagValues()
    define_flags(values)
    with pytest.raises(flags.IllegalFlagValueError) as error:
        values(["train.py", flag])
    assert message in str(error.value)


def _command_line_config(args, tmp_path):
    values = flags.FlagValues()
    define_flags(values)
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--sources=imagenet/efficientnet_lite0\n")
    values(["train.py", *[arg.replace("FLAGFILE", str(flagfile)) for arg in args]])
    return config_from_command_line(values)


@pytest.mark.parametrize("dataset", ["folder:/data/mine", "video_folder:/data/videos"])
def test_own_files_without_sources_are_refused_rather_than_downloading_weights(dataset, tmp_path):
    with pytest.raises(ConfigError, match="needs --sources.*imagenet/efficientnet_lite0.*--method=scratch"):
        _command_line_config([f"--dataset={dataset}"], tmp_path)
    # Named sources (on the command line or in a flagfile), a method without sources, or tfds data pass.
    assert _command_line_config([f"--dataset={dataset}", "--sources=a.keras"], tmp_path).sources == ["a.keras"]
    flagfile_config = _command_line_config([f"--dataset={dataset}", "--flagfile=FLAGFILE"], tmp_path)
    assert flagfile_config.sources == ["imagenet/efficientnet_lite0"]
    assert _command_line_config([f"--dataset={dataset}", "--method=scratch"], tmp_path).method == "scratch"
    assert _command_line_config(["--dataset=cifar10"], tmp_path).sources == ["imagenet/resnet50"]


def test_the_sources_refusal_is_one_line_and_exit_2(tmp_path):
    result = run_script(["tools/train.py", f"--dataset=folder:{tmp_path}", f"--model_dir={tmp_path / 'run'}"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --dataset=folder:")
    assert not (tmp_path / "run").exists()


def test_a_refused_flag_is_one_line_exit_2_and_touches_nothing(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    result = run_python(["tools/train.py", "--sources=", f"--model_dir={model_dir}", "--lr=nan"])
    assert result.returncode == 2, result.stderr[-2000:]
    # Nothing else on stderr: no traceback, and none of TensorFlow's start-up lines (cuInit & co.).
    assert result.stderr.splitlines() == [
        "error: flag --lr=nan: must be a finite number > 0",
        "Run with --helpfull to list the flags.",
    ], result.stderr[-2000:]
    assert _snapshot(tmp_path) == before


def test_tensorflow_start_up_lines_are_recognised_and_other_messages_kept():
    from sskt_tf._tensorflow_startup import is_startup_noise, without_startup_noise

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796528632.516267   10503 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796528632.516607   10503 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
        "E0000 00:00:1796528641.184211   10503 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "W0000 00:00:1796528641.184211   10503 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
    ]
    kept = [
        "E0000 00:00:1796528641.184211   10503 op_kernel.cc:1857] OP_REQUIRES failed: out of memory",
        "F0000 00:00:1796528641.184211   10503 check.cc:12] Check failed: shape",
        "UserWarning: something a user should see",
        "error: flag --lr=nan: must be a finite number > 0",
    ]
    assert [is_startup_noise(line) for line in noise] == [True] * len(noise)
    assert [is_startup_noise(line) for line in kept] == [False] * len(kept)
    # A message over several lines goes as a whole; what follows a kept line stays.
    continued = "To enable the following instructions: AVX2 FMA, rebuild TensorFlow."
    guard = "I0000 00:00:1796528632.5 10503 cpu_feature_guard.cc:210] This TensorFlow binary is optimized."
    assert without_startup_noise([guard, continued, kept[0], "  its second line", noise[3]]) == [
        kept[0],
        "  its second line",
    ]


def _config(tmp_path, **overrides):
    import dataclasses

    from sskt_tf import TrainConfig

    base = TrainConfig(sources=[], method="scratch", epochs=1, batch_size=8, model_dir=str(tmp_path / "run"))
    return dataclasses.replace(base, **overrides)


def test_a_model_dir_with_someone_elses_files_is_refused_untouched(tmp_path):
    from sskt_tf.errors import ConfigError
    from sskt_tf.training import train

    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "best.keras").write_bytes(b"my own model")
    (model_dir / "history.csv").write_text("epoch,loss\n0,1.0\n")
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match="holds best.keras, history.csv but no flags.txt: not a run of this tool"):
        train(_config(tmp_path, dataset=f"folder:{tmp_path}"))
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(model_dir="{file}"), "--model_dir=.*a_file is a file; the run needs a directory there"),
        (dict(export_dir="{file}"), "--export_dir=.*a_file is a file"),
        (dict(dataset="{directory}"), "--dataset=.*images is a directory: use --dataset=folder:.*images"),
    ],
)
def test_paths_of_the_wrong_kind_are_named_before_any_work(tmp_path, overrides, message):
    from sskt_tf.errors import ConfigError
    from sskt_tf.training import train

    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "images").mkdir()
    values = {k: v.format(file=tmp_path / "a_file", directory=tmp_path / "images") for k, v in overrides.items()}
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match=message):
        train(_config(tmp_path, **values))
    assert _snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_export_and_study_directories_that_are_files_are_named(tmp_path):
    from studies import harness

    from sskt_tf.errors import ConfigError
    from sskt_tf.training import export

    (tmp_path / "a_file").write_text("mine")
    with pytest.raises(ConfigError, match="--export_dir=.*a_file is a file"):
        export.version_dir(str(tmp_path / "a_file"))
    with pytest.raises(ConfigError, match="--output_dir=.*a_file is a file"):
        harness.reproduce(["configs/paper/video"], output_dir=str(tmp_path / "a_file"), collect_only=True)
    assert (tmp_path / "a_file").read_text() == "mine"


def _image_folder(root, per_class=3):
    import numpy as np
    import tensorflow as tf

    for split in ("train", "val"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                pixels = np.full((8, 8, 3), 40 * index, np.uint8)
                tf.io.write_file(str(root / split / name / f"{index}.png"), tf.io.encode_png(pixels))


def test_empty_and_foreign_image_files_are_named_and_left_out(tmp_path, caplog):
    from sskt_tf import data

    _image_folder(tmp_path)
    (tmp_path / "train" / "a" / "zero.jpg").write_bytes(b"")
    (tmp_path / "train" / "b" / "notes.png").write_text("not an image")
    with caplog.at_level("WARNING"):
        loaded = data.load(f"folder:{tmp_path}", batch_size=2, image_size=8, cache=False)
    assert loaded.train_examples == 6  # the two bad files are not counted
    (warning,) = [r.message for r in caplog.records if "Skipping" in r.message]
    assert "2 file(s)" in warning and "zero.jpg" in warning and "notes.png" in warning


def test_validation_images_that_are_all_unreadable_stop_the_run_before_training(tmp_path):
    from sskt_tf.errors import ConfigError
    from sskt_tf.training import train

    data_dir = tmp_path / "images"
    _image_folder(data_dir)
    for path in (data_dir / "val").rglob("*.png"):
        path.write_text("NA")
    config = _config(tmp_path, dataset=f"folder:{data_dir}", image_size=8, batch_size=2)
    for _ in range(2):  # and again: no crash loop, the same clear error
        with pytest.raises(ConfigError, match="val holds no readable images"):
            train(config)
    assert not (tmp_path / "run" / "history.csv").exists()
