"""Plug-ins registered from outside the package, as a user's own module would: one for each registry.

Each is a context manager that registers its plug-in and removes it on exit.
"""

import contextlib
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

DOCS_EXTENDING = pathlib.Path(__file__).resolve().parents[2] / "docs" / "extending.md"


@contextlib.contextmanager
def npz_dataset_kind(path, digits):
    """Dataset kind ``npz:FILE`` of train/val arrays; writes 200 + 360 digits to ``path``."""
    from sskt_tf import downloads
    from sskt_tf.data import kinds

    def load_images(location, image_size, data_dir, download, order_seed, subset):
        arrays = np.load(location)
        splits = [tf.data.Dataset.from_tensor_slices((arrays[f"{s}_x"], arrays[f"{s}_y"])) for s in ("train", "val")]
        info = dict(num_classes=10, class_names=[str(c) for c in range(10)], train_examples=len(arrays["train_y"]))
        return *splits, dict(info, mean=None, std=None, image_shape=(16, 16, 3), multi_label=False), 16

    def missing(location, data_dir, download):
        return [] if os.path.exists(location) else [downloads.Missing(what=f"{location} is not there.")]

    train_x, train_y, val_x, val_y = digits
    np.savez(path, train_x=train_x[:200], train_y=train_y[:200], val_x=val_x, val_y=val_y)
    kinds.register(
        kinds.DatasetKind("npz", "npz:FILE", prefix="npz:", load_images=load_images, missing=missing, user_files=True)
    )
    try:
        yield path
    finally:
        kinds.unregister("npz")


@contextlib.contextmanager
def toy_source_family(tiny_source_path):
    """Source family ``toy``: ``toy/tiny`` is the tiny .keras source; yields ``(family, build calls)``."""
    from sskt_tf import sources
    from sskt_tf.sources import registry

    built = []

    def build(arch, weights, input_size):
        built.append((arch, weights, input_size))
        return sources.from_file(tiny_source_path, name=f"toy_{arch}")

    family = registry.register(
        registry.SourceFamily(
            name="toy",
            prefix="toy",
            archs=("tiny",),
            summary="a test's own family",
            build=build,
            weights_flag="source_weights",
            weights_keyword="toyweights",
            num_classes=5,
        )
    )
    try:
        yield family, built
    finally:
        registry.unregister("toy")


@contextlib.contextmanager
def own_target():
    """Target ``own_net``: one convolution named ``stage1``, pooled, then the classifier."""
    from sskt_tf import targets

    def build(num_classes, image_size, mean, std, frames):
        del mean, std, frames
        inputs = keras.Input((image_size, image_size, 3))
        stage1 = keras.layers.Conv2D(4, 3, padding="same", name="stage1")(keras.layers.Rescaling(1 / 255)(inputs))
        pooled = keras.layers.GlobalAveragePooling2D()(stage1)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(pooled), name="own_net")

    network = targets.register(targets.TargetNetwork("own_net", "a test's own target", build))
    try:
        yield network
    finally:
        targets.registry.unregister("own_net")


def extending_example():
    """The source of the label-smoothing method in the "How to extend" page."""
    text = DOCS_EXTENDING.read_text()
    blocks = text.split("```python\n")[1:]
    return next(block.split("```")[0] for block in blocks if "class LabelSmoothingModel" in block)


@contextlib.contextmanager
def documented_method():
    """Method ``ls``: the "How to extend" page's example, run as it is written there."""
    from sskt_tf import methods

    namespace = {"__name__": "label_smoothing_from_the_docs"}
    exec(compile(extending_example(), str(DOCS_EXTENDING), "exec"), namespace)  # noqa: S102
    try:
        yield namespace
    finally:
        methods.unregister("ls")
