"""Shared fixtures: small real-image datasets and a tiny saved source model."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The test processes (pytest-xdist) share one GPU where there is one: none may take all its memory.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers.in_process import op_determinism_restored  # noqa: E402


@pytest.fixture(autouse=True)
def _no_op_determinism_left_behind():
    """Op determinism that a test turns on (training in this process with ``deterministic``) ends with it."""
    with op_determinism_restored():
        yield


@pytest.fixture(scope="session")
def digits():
    """``(train_x, train_y, val_x, val_y)``: 1437/360 split of the digits, 16x16 RGB uint8."""
    from studies.digits import digits_images

    images, labels = digits_images(16)
    order = np.random.RandomState(0).permutation(len(images))
    images, labels = images[order], labels[order]
    return images[:1437], labels[:1437], images[1437:], labels[1437:]


@pytest.fixture(scope="session")
def digits_folder(tmp_path_factory, digits):
    """A class-per-subfolder PNG dataset (train/ and val/) of 300 + 100 digits."""
    from PIL import Image

    root = tmp_path_factory.mktemp("digits_folder")
    train_x, train_y, val_x, val_y = digits
    for split, xs, ys in (("train", train_x[:300], train_y[:300]), ("val", val_x[:100], val_y[:100])):
        for index, (image, label) in enumerate(zip(xs, ys)):
            class_dir = root / split / f"digit{label}"
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(class_dir / f"{index}.png")
    return root


@pytest.fixture(scope="session")
def tiny_source_path(tmp_path_factory):
    """A small random CNN saved as ``.keras``: 16x16 raw-pixel input, 5 logits, with BatchNorm."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x), name="tiny_source")
    path = tmp_path_factory.mktemp("sources") / "tiny.keras"
    model.save(path)
    return str(path)
