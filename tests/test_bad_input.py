"""Bad input from the command line: one clear line, exit code 2, no traceback, no file touched."""

import os

import pytest
from absl import flags
from helpers.processes import run_python

from sskt_tf.training.flags import define_flags


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


def test_a_refused_flag_is_one_line_exit_2_and_touches_nothing(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    result = run_python(["tools/train.py", "--sources=", f"--model_dir={model_dir}", "--lr=nan"])
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: flag --lr=nan: must be a finite number > 0"], result.stderr[-2000:]
    assert "Traceback" not in result.stderr and _snapshot(tmp_path) == before
