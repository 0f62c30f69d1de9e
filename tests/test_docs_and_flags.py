"""README stays true: its Python example runs, every flag is documented, flagfiles round-trip."""

import dataclasses
import re

import pytest
from absl import flags
from helpers.in_process import run_script
from helpers.processes import REPO

from sskt_tf.training.config import TrainConfig
from sskt_tf.training.flags import config_from_flags, define_flags, to_flagfile


def _readme():
    with open(f"{REPO}/README.md") as f:
        return f.read()


def test_every_flag_is_documented_in_readme():
    documented = set(re.findall(r"^\| `--(\w+)` \|", _readme(), flags=re.M))
    assert documented == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    api_section = _readme().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", api_section, flags=re.S).group(1)
    script = tmp_path / "readme_example.py"
    script.write_text(f"import os\nos.chdir({str(tmp_path)!r})\n" + code)
    result = run_script([str(script)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "aux_my_source_loss" in result.stdout and (tmp_path / "digits_target.keras").exists()


def test_flagfile_written_by_a_run_reads_back_to_the_same_config(tmp_path):
    config = TrainConfig(
        dataset="folder:/data/x",
        sources=["imagenet/resnet50", "/m/a.keras"],
        lr_milestones=[5, 9],
        alpha=0.25,
        download=False,
        feature_layers=["stage2", "stage3"],
        model_dir="runs/x",
    )
    path = tmp_path / "flags.txt"
    path.write_text(to_flagfile(config))
    values = flags.FlagValues()
    define_flags(values)
    values(["prog", f"--flagfile={path}"])
    assert config_from_flags(values) == config


def test_paper_flagfiles_parse(tmp_path):
    for name in ("cifar10", "cifar100", "stl10"):
        values = flags.FlagValues()
        define_flags(values)
        values(["prog", f"--flagfile={REPO}/configs/{name}.flags"])
        config = config_from_flags(values)
        assert (config.dataset, config.epochs, config.lr_milestones, config.weight_decay) == (
            name,
            200,
            [60, 120, 160],
            5e-4,
        )
        assert config.sources == ["places365/resnet50", "imagenet/resnet50"]  # the paper's P+I
        assert (config.places365_weights, config.source_weights) == ("places365", "imagenet")
        assert config.head == "transfer" and config.alpha == 0.1 and config.source_scale == "7/3"
