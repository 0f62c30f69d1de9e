"""Export of the target network alone: SavedModel for TF Serving, and TFLite.

The SavedModel holds only the target's variables (no source or head weights) and
two signatures:

- ``serving_default``: ``images``, uint8 ``[batch, H, W, 3]`` RGB pixels, returns
  ``probabilities`` (float32 ``[batch, classes]``), ``classes`` (int64 ``[batch]``)
  and ``logits``, and, when the class names are known, ``class_names`` (string
  ``[batch]``, the predicted class's name);
- ``serving_image_bytes``: ``image_bytes``, string ``[batch]`` of encoded JPEG, PNG,
  GIF or BMP images of any size, decoded, resized to ``H x W`` (bilinear, antialiased,
  as training data is) and classified the same way.

A video target (a 3D ResNet) has ``serving_default`` only, taking ``clips``, uint8
``[batch, T, H, W, 3]`` (the paper's: ``[batch, 16, 112, 112, 3]``), with the same outputs.

Versions follow TF Serving's layout, ``<export_dir>/<version>/``.
"""

import dataclasses
import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from sskt_tf.errors import ConfigError
from sskt_tf.sources.files import load_keras_file
from sskt_tf.training.flags import config_from_flagfile
from sskt_tf.training.run_data import load_data

TFLITE_QUANTIZATIONS = ("none", "float16", "int8")


def _example_shape(target):
    """``(H, W, 3)`` of an image target or ``(T, H, W, 3)`` of a video target (all sizes fixed)."""
    shape = target.input_shape
    if len(shape) not in (4, 5) or any(size is None for size in shape[1:]) or shape[-1] != 3:
        raise ConfigError(
            f"Export needs a target with a fixed [H, W, 3] image or [T, H, W, 3] clip input, got {shape}."
        )
    return tuple(int(size) for size in shape[1:])


def _outputs(target, images, class_names=None):
    logits = tf.cast(target(tf.cast(images, tf.float32), training=False), tf.float32)
    probabilities = tf.nn.softmax(logits, axis=-1)
    outputs = {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=-1), "logits": logits}
    if class_names:
        outputs["class_names"] = tf.gather(tf.constant(list(class_names)), outputs["classes"])
    return outputs


def _archive(target, class_names=None):
    """A ``keras.export.ExportArchive`` with the two serving endpoints."""
    num_classes = int(target.output_shape[-1])
    if class_names and len(class_names) != num_classes:
        raise ConfigError(f"{len(class_names)} class names for a target with {num_classes} outputs.")
    example_shape = _example_shape(target)
    height, width = example_shape[-3:-1]
    input_name = "clips" if len(example_shape) == 4 else "images"
    archive = keras.export.ExportArchive()
    archive.track(target)

    def serve_images(images):
        # Signatures do not check static shapes when called; say what is expected.
        tf.debugging.assert_equal(
            tf.shape(images)[1:],
            tf.constant(example_shape),
            message=f"`{input_name}` must be uint8 RGB pixels of shape [batch, {', '.join(map(str, example_shape))}]",
        )
        return _outputs(target, images, class_names)

    def serve_image_bytes(image_bytes):
        def decode(encoded):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            return tf.image.resize(image, (height, width), method="bilinear", antialias=True)

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32))
        return _outputs(target, tf.round(tf.clip_by_value(images, 0.0, 255.0)), class_names)

    archive.add_endpoint(
        "serving_default",
        serve_images,
        input_signature=[tf.TensorSpec([None, *example_shape], tf.uint8, name=input_name)],
    )
    if input_name == "images":
        archive.add_endpoint(
            "serving_image_bytes",
            serve_image_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
    return archive


def next_version(export_dir):
    """One more than the largest numeric version under ``export_dir`` (1 if none)."""
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ConfigError(f"--export_dir={export_dir} is a file; exports need a directory there.")
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()]
    return max(versions, default=0) + 1


def version_dir(export_dir, version=None):
    """``<export_dir>/<version>`` (None = :func:`next_version`); a ConfigError if it exists."""
    version = version or next_version(export_dir)
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ConfigError(f"--export_dir={export_dir} is a file; exports need a directory there.")
    if version < 1:
        raise ConfigError(f"--version must be a positive integer, got {version}.")
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path):
        raise ConfigError(f"{path} exists; TF Serving versions are immutable: pick another --version.")
    return path


def export_saved_model(target, export_dir, version=None, class_names=None):
    """Writes ``target`` as a SavedModel for TF Serving.

    Args:
        target: the target network (raw-pixel input, logits output), e.g.
            ``best.keras`` of a run.
        export_dir: the model's base directory; the SavedModel goes to
            ``<export_dir>/<version>/``.
        version: positive integer; None = :func:`next_version`.
        class_names: the names of the target's classes in label order; the
            signatures then also return the predicted ``class_names``.

    Returns:
        The SavedModel directory.
    """
    path = version_dir(export_dir, version)
    _archive(target, class_names).write_out(path, verbose=False)
    return path


def export_tflite(saved_model_dir, output, quantize="none", representative_images=None):
    """Converts the ``serving_default`` signature of a SavedModel to TFLite.

    Args:
        saved_model_dir: a directory from :func:`export_saved_model`.
        output: the ``.tflite`` file to write.
        quantize: ``none`` (float32), ``float16`` (float16 weights) or
            ``int8`` (integer weights and activations, calibrated on
            ``representative_images``; float fallback where no int8 kernel exists).
        representative_images: uint8 ``[n, H, W, 3]`` training images (int8 only).

    Returns:
        ``output``.
    """
    if quantize not in TFLITE_QUANTIZATIONS:
        raise ConfigError(f"Unknown --quantize={quantize}; choose one of {', '.join(TFLITE_QUANTIZATIONS)}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ConfigError("--quantize=int8 needs representative training images to calibrate on.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [image[None]] for image in np.asarray(representative_images, np.uint8)
        )
    with open(output, "wb") as f:
        f.write(converter.convert())
    return output


class TFLiteClassifier:
    """Runs a ``.tflite`` file from :func:`export_tflite` on batches of images, with LiteRT.

    LiteRT (``ai-edge-litert``) is the TFLite runtime's maintained home; TF 2.21
    deprecates ``tf.lite.Interpreter`` in its favour.

    Args:
        path: the ``.tflite`` file.
    """

    def __init__(self, path):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ConfigError(
                "Running a .tflite file needs LiteRT: pip install 'ai-edge-litert>=2.3,<3' (a dependency of sskt_tf)."
            ) from error
        self.interpreter = Interpreter(model_path=path)
        self._runner = self.interpreter.get_signature_runner("serving_default")
        (self._input_name,) = self._runner.get_input_details()  # "images", or "clips" for a video target

    def __call__(self, images):
        """Returns the ``serving_default`` outputs for uint8 ``[batch, H, W, 3]`` images (or clips)."""
        return self._runner(**{self._input_name: np.asarray(images, np.uint8)})


def accuracy(predict_probabilities, batches):
    """Top-1 accuracy of a classifier over ``(images, labels)`` batches.

    Args:
        predict_probabilities: function of uint8 images ``[batch, H, W, 3]``
            returning class scores ``[batch, classes]``.
        batches: iterable of ``(images in [0, 255], integer labels)``.

    Returns:
        ``(accuracy, number of examples)``.
    """
    correct = total = 0
    for images, labels in batches:
        images = np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8)
        predicted = np.argmax(predict_probabilities(images), axis=-1)
        correct += int(np.sum(predicted == np.asarray(labels).reshape(-1)))
        total += len(predicted)
    return correct / max(total, 1), total


def export_run(
    model_dir,
    export_dir,
    version=None,
    checkpoint="best",
    export_format="saved_model",
    quantize="none",
    evaluate=True,
    representative_examples=200,
):
    """Exports the target of a finished run (``tools/export.py``).

    Args:
        model_dir: the run's ``--model_dir``.
        export_dir: base directory; files go to ``<export_dir>/<version>/``.
        version: positive integer; None = the next free version.
        checkpoint: ``best`` or ``last`` (which ``.keras`` file to export).
        export_format: ``saved_model`` (TF Serving) or ``tflite``
            (``model.tflite`` next to ``tflite_eval.json``).
        quantize: TFLite quantization, see :func:`sskt_tf.training.export.export_tflite`.
        evaluate: for TFLite, also measure the Keras and the TFLite model's
            accuracy on the run's validation split.
        representative_examples: training images that calibrate int8.

    Returns:
        A dict with ``path`` and, for TFLite with ``evaluate``,
        ``keras_val_accuracy``, ``tflite_val_accuracy`` and ``val_examples``.
    """
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"Unknown --checkpoint={checkpoint}; choose best or last.")
    if export_format not in ("saved_model", "tflite"):
        raise ConfigError(f"Unknown --format={export_format}; choose saved_model or tflite.")
    target = load_keras_file(os.path.join(model_dir, f"{checkpoint}.keras"), f"The run's {checkpoint} target")
    if export_format == "tflite" and len(target.input_shape) == 5:
        raise ConfigError(
            "TFLite has no built-in 3D max-pool (a video target would need TensorFlow's Select ops in the "
            "interpreter): export video targets with --format=saved_model."
        )
    if export_format == "saved_model":
        return {"path": export_saved_model(target, export_dir, version, class_names=_class_names(model_dir))}

    needs_data = evaluate or quantize == "int8"
    # Plain pipelines even for a run trained from a soft-label cache: only images are needed.
    run_config = dataclasses.replace(config_from_flagfile(os.path.join(model_dir, "flags.txt")), soft_label_cache="")
    data = load_data(run_config) if needs_data else None
    representative = _first_images(data.train, representative_examples) if quantize == "int8" else None
    output_dir = version_dir(export_dir, version)
    with tempfile.TemporaryDirectory() as scratch:
        saved_model = export_saved_model(target, scratch, 1)
        os.makedirs(output_dir)
        path = export_tflite(saved_model, os.path.join(output_dir, "model.tflite"), quantize, representative)
    result = {"path": path, "quantize": quantize}
    if evaluate:
        classifier = TFLiteClassifier(path)
        keras_accuracy, examples = accuracy(lambda x: target.predict(x.astype("float32"), verbose=0), data.val)
        tflite_accuracy, _ = accuracy(lambda x: classifier(x)["probabilities"], data.val)
        result.update(keras_val_accuracy=keras_accuracy, tflite_val_accuracy=tflite_accuracy, val_examples=examples)
        with open(os.path.join(output_dir, "tflite_eval.json"), "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
    return result


def _class_names(model_dir):
    """The class names a finished run recorded in ``results.json`` (None if it has none)."""
    path = os.path.join(model_dir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("class_names")


def _first_images(batches, count):
    """The first ``count`` images of an ``(images, labels)`` batch dataset, as one array."""
    collected, total = [], 0
    for images, _ in batches.as_numpy_iterator():
        collected.append(images)
        total += len(images)
        if total >= count:
            break
    if not collected:
        raise ConfigError("No training batch to calibrate int8 on: the training set is smaller than --batch_size.")
    return np.concatenate(collected)[:count]
