"""SavedModel and TFLite export of a run's target: signatures, equal outputs, no source weights."""

import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.in_process import run_script
from helpers.processes import run_python
from PIL import Image

from sskt_tf import training
from sskt_tf.errors import ConfigError
from sskt_tf.training import export
from sskt_tf.training.config import TrainConfig


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, digits_folder, tiny_source_path):
    """A one-epoch SSKT run on the digits folder: its model_dir."""
    model_dir = tmp_path_factory.mktemp("export_run") / "run"
    training.train(
        TrainConfig(
            dataset=f"folder:{digits_folder}",
            image_size=16,
            sources=[tiny_source_path],
            epochs=1,
            batch_size=32,
            verbose=0,
            model_dir=str(model_dir),
        )
    )
    return model_dir


@pytest.fixture(scope="module")
def target(finished_run):
    return keras.saving.load_model(finished_run / "best.keras", compile=False)


def _images(count=4, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (count, 16, 16, 3)).astype(np.uint8)


def _expected_probabilities(target, images):
    return tf.nn.softmax(target.predict(images.astype("float32"), verbose=0)).numpy()


_LOAD_AND_SERVE = """
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
outputs = model.signatures["serving_default"](images=tf.constant(images))
encoded = [open(path, "rb").read() for path in sys.argv[3:]]
from_bytes = model.signatures["serving_image_bytes"](image_bytes=tf.constant(encoded))
print(json.dumps({"probabilities": outputs["probabilities"].numpy().tolist(),
                  "classes": outputs["classes"].numpy().tolist(),
                  "logits": outputs["logits"].numpy().tolist(),
                  "bytes_probabilities": from_bytes["probabilities"].numpy().tolist()}))
"""


@pytest.mark.slow
def test_saved_model_serves_the_target_in_a_fresh_process(finished_run, target, tmp_path):
    result = training.export_run(str(finished_run), str(tmp_path / "export"))
    path = result["path"]
    assert path == str(tmp_path / "export" / "1")
    images = _images()
    np.save(tmp_path / "images.npy", images)
    png_paths = []
    for index, image in enumerate(images[:2]):
        png_paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(image).save(png_paths[-1])
    script = tmp_path / "serve.py"
    script.write_text(_LOAD_AND_SERVE)
    served = run_python([str(script), path, str(tmp_path / "images.npy"), *png_paths])
    assert served.returncode == 0, served.stderr[-3000:]
    outputs = json.loads(served.stdout.strip().splitlines()[-1])
    expected = _expected_probabilities(target, images)
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    assert outputs["classes"] == np.argmax(expected, axis=-1).tolist()
    np.testing.assert_allclose(
        outputs["logits"], target.predict(images.astype("float32"), verbose=0), rtol=1e-5, atol=1e-4
    )  # logits reach thousands here
    # PNG bytes of the same 16x16 pixels: decoding is lossless and no resize happens.
    np.testing.assert_allclose(outputs["bytes_probabilities"], expected[:2], atol=1e-5)


@pytest.mark.slow
def test_saved_model_holds_only_the_target_and_checks_its_inputs(finished_run, target, tmp_path):
    path = export.export_saved_model(target, str(tmp_path / "export"))
    stored = tf.train.list_variables(os.path.join(path, "variables", "variables"))
    # keras.export.ExportArchive saves its `variables` and `_all_variables` lists, each
    # holding every variable of the target, and nothing else: no source or head weights.
    per_list = {}
    for name, shape in stored:
        if "OBJECT_GRAPH" not in name:
            per_list[name.split("/")[0]] = per_list.get(name.split("/")[0], 0) + int(np.prod(shape))
    assert per_list == {"variables": target.count_params(), "_all_variables": target.count_params()}
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for expected in (
        "inputs['images']",
        "dtype: DT_UINT8",
        "shape: (-1, 16, 16, 3)",
        "outputs['probabilities']",
        "outputs['classes']",
        "outputs['logits']",
    ):
        assert expected in shown.stdout, shown.stdout
    serving = tf.saved_model.load(path).signatures["serving_default"]
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError), match="uint8"):
        serving(images=tf.constant(_images().astype("float32")))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"must be uint8 RGB pixels of shape \[batch, 16, 16, 3\]"):
        serving(images=tf.constant(np.zeros((2, 8, 8, 3), np.uint8)))


@pytest.mark.slow
def test_versions_follow_tf_serving_layout(target, tmp_path):
    base = str(tmp_path / "export")
    assert export.next_version(base) == 1
    export.export_saved_model(target, base)
    assert export.next_version(base) == 2
    assert export.export_saved_model(target, base, version=7).endswith(os.path.join("export", "7"))
    with pytest.raises(ConfigError, match="exists; TF Serving versions are immutable"):
        export.export_saved_model(target, base, version=7)
    with pytest.raises(ConfigError, match="does not exist"):
        training.export_run(str(tmp_path / "no_run"), base)


@pytest.mark.slow
def test_tflite_float_matches_keras_and_reports_accuracy(finished_run, target, tmp_path):
    result = training.export_run(str(finished_run), str(tmp_path / "tflite"), export_format="tflite")
    assert result["path"].endswith(os.path.join("tflite", "1", "model.tflite"))
    images = _images(6, seed=1)
    classifier = export.TFLiteClassifier(result["path"])
    assert type(classifier.interpreter).__module__.startswith("ai_edge_litert")  # LiteRT, not tf.lite
    probabilities = classifier(images)["probabilities"]
    np.testing.assert_allclose(probabilities, _expected_probabilities(target, images), atol=1e-4)
    saved = json.loads((tmp_path / "tflite" / "1" / "tflite_eval.json").read_text())
    assert saved["val_examples"] == 100
    assert saved["tflite_val_accuracy"] == pytest.approx(saved["keras_val_accuracy"], abs=0.011)


def _val_folder(digits_folder):
    """The digits folder's validation images (uint8) and labels, in class-folder order."""
    images, labels = [], []
    for label, class_dir in enumerate(sorted((digits_folder / "val").iterdir())):
        for path in sorted(class_dir.iterdir()):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.array(labels)


@pytest.mark.slow
def test_export_tool_int8_reports_both_accuracies(finished_run, target, digits_folder, tmp_path):
    exported = run_script(
        [
            "tools/export.py",
            f"--model_dir={finished_run}",
            f"--export_dir={tmp_path / 'int8'}",
            "--format=tflite",
            "--quantize=int8",
            "--representative_examples=64",
        ]
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    result = json.loads(exported.stdout.strip().splitlines()[-1])
    assert result["quantize"] == "int8" and result["val_examples"] == 100
    assert os.path.getsize(result["path"]) < os.path.getsize(finished_run / "best.keras") / 2  # int8 weights
    # The int8 model computes Keras' logits up to quantisation error and mostly predicts Keras'
    # classes; the reported accuracies are these predictions'.
    images, labels = _val_folder(digits_folder)
    keras_logits = target.predict(images.astype("float32"), verbose=0)
    int8 = export.TFLiteClassifier(result["path"])(images)
    spread = keras_logits.max() - keras_logits.min()
    assert np.abs(int8["logits"] - keras_logits).mean() <= 0.01 * spread
    assert np.corrcoef(int8["logits"].ravel(), keras_logits.ravel())[0, 1] >= 0.99
    # (The one-epoch model's top two logits are often nearly tied: int8 may swap those.)
    assert np.mean(int8["logits"].argmax(-1) == keras_logits.argmax(-1)) >= 0.8
    assert result["keras_val_accuracy"] == pytest.approx(np.mean(keras_logits.argmax(-1) == labels))
    assert result["tflite_val_accuracy"] == pytest.approx(np.mean(int8["probabilities"].argmax(-1) == labels))
    bad = run_script(
        ["tools/export.py", f"--model_dir={finished_run}", f"--export_dir={tmp_path / 'x'}", "--quantize=int4"]
    )
    assert bad.returncode == 2 and "int4" in bad.stderr


@pytest.mark.slow
def test_image_bytes_signature_resizes_any_image(target, tmp_path):
    path = export.export_saved_model(target, str(tmp_path / "export"))
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 256, (40, 30, 3)).astype(np.uint8)).save(buffer, format="JPEG")
    outputs = tf.saved_model.load(path).signatures["serving_image_bytes"](image_bytes=tf.constant([buffer.getvalue()]))
    assert outputs["probabilities"].shape == (1, 10)
    np.testing.assert_allclose(np.sum(outputs["probabilities"].numpy()), 1.0, atol=1e-5)
