"""Every extension point is a registry: a method, a source family, a dataset kind and a target,
each registered inside the test with no module of the package edited, train through ``tools/train.py``."""

import json

import pytest
from helpers import plugins
from helpers.in_process import run_script


@pytest.fixture
def registered(tmp_path, digits, tiny_source_path):
    """The four plug-ins, registered for the test's duration; yields the npz dataset's path."""
    with (
        plugins.documented_method(),
        plugins.own_target(),
        plugins.toy_source_family(tiny_source_path),
        plugins.npz_dataset_kind(tmp_path / "digits.npz", digits) as npz,
    ):
        yield npz


@pytest.mark.parametrize(
    "method_flags,reported",
    [
        (["--method=ls", "--alpha=0.2"], "target_loss"),  # the documented method, on the others' plug-ins
        (["--method=sskt", "--sources=toy/tiny", "--source_weights=toyweights"], "aux_toy_tiny_agreement"),
    ],
    ids=["documented_method", "sskt_with_a_toy_source"],
)
def test_registered_plug_ins_train_through_the_cli(registered, tmp_path, method_flags, reported):
    model_dir = tmp_path / "run"
    result = run_script(
        [
            "tools/train.py",
            f"--dataset=npz:{registered}",
            "--target=own_net",
            "--epochs=1",
            "--batch_size=50",
            "--lr=0.05",
            f"--model_dir={model_dir}",
            *method_flags,
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((model_dir / "results.json").read_text())
    method = method_flags[0].split("=")[1]
    assert results["method"] == method and results["train_examples"] == 200 and results["num_classes"] == 10
    assert reported in results and results["epochs"] == 1
    flags = (model_dir / "flags.txt").read_text()
    assert f"--dataset=npz:{registered}" in flags and "--target=own_net" in flags
    if method == "ls":
        assert "--alpha=0.2" in flags
    else:
        assert results["sources"] == ["toy_tiny"]


def test_the_documented_method_registers_and_leaves_with_its_context():
    from sskt_tf import methods

    with plugins.documented_method():
        assert "ls" in methods.names() and methods.get("ls").defaults == {"alpha": 0.1}
    assert "ls" not in methods.names()


def test_a_registry_refuses_clashes_lists_its_names_and_keeps_its_order():
    import collections

    from sskt_tf.errors import ConfigError
    from sskt_tf.registry import Registry

    Entry = collections.namedtuple("Entry", "name prefix")
    registry = Registry(
        "Thing",
        flag="thing",
        conflict=lambda entry, other: "same prefix" if entry.prefix == other.prefix else None,
        order=lambda entry: entry.prefix is None,
    )
    plain, prefixed = registry.register(Entry("plain", None)), registry.register(Entry("prefixed", "p:"))
    assert registry.entries() == [prefixed, plain] and registry.names() == ("prefixed", "plain")
    assert registry.get("plain") is plain
    with pytest.raises(ValueError, match="Thing 'plain' is registered twice"):
        registry.register(Entry("plain", "q:"))
    with pytest.raises(ValueError, match="same prefix"):
        registry.register(Entry("other", "p:"))
    with pytest.raises(ConfigError, match="Unknown --thing=nothing; choose one of prefixed, plain."):
        registry.get("nothing")
    registry.unregister("plain")
    registry.unregister("never_registered")
    assert registry.names() == ("prefixed",)


def test_a_method_that_returns_an_undeclared_term_is_told_which():
    import keras
    import numpy as np

    from sskt_tf.methods.base import Losses, LossTermsModel

    class Forgetful(LossTermsModel):
        def __init__(self, target):
            super().__init__(target, name="forgetful", loss_names=("target_loss",))

        def loss_terms(self, batch, training):
            logits = self.target(batch.images, training=training)
            loss = self.target_loss_fn(batch.labels, logits)
            return Losses([logits], loss, {"target_loss": loss, "extra_loss": loss})

    inputs = keras.Input((4,))
    model = Forgetful(keras.Model(inputs, keras.layers.Dense(3)(inputs)))
    model.compile("sgd")
    with pytest.raises(ValueError, match=r"loss_terms returned \['extra_loss'\], which Forgetful does not declare"):
        model.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int32"), epochs=1, verbose=0)
