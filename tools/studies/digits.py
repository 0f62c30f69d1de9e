"""A small transfer study that runs on a CPU in minutes, on real images (scikit-learn's digits).

The source network learns digits 0-4 from all of their images; the target learns digits
5-9 from a few labelled images per class, so source and target share no class. Scratch,
SSKT (the digits 0-4 network as its source), KD (a larger teacher trained on the same few
labels), DML and MAXL then train the same target over several seeds
(``configs/study/``, run by ``tools/digits_study.py`` through :mod:`studies.harness`).
"""

import json
import os
import shutil

import numpy as np

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
DATA_DIR = os.path.join("runs", "digits_study", "data")  # where configs/study's tables read it


def digits_images(image_size=16):
    """scikit-learn's 1797 8x8 digits as uint8 RGB images of side ``image_size``, and their labels.

    Args:
        image_size: output side length (bilinear upsampling).

    Returns:
        ``(images [N, S, S, 3] uint8, labels [N] int64)``.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = []
    for image in digits.images:
        gray = Image.fromarray(np.uint8(image * (255.0 / 16.0))).resize((image_size, image_size), Image.BILINEAR)
        images.append(np.stack([np.asarray(gray)] * 3, axis=-1))
    return np.stack(images), digits.target.astype(np.int64)


def _save(images, labels, split_dir):
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels)):
        class_dir = os.path.join(split_dir, f"digit{label}")
        os.makedirs(class_dir, exist_ok=True)
        Image.fromarray(image).save(os.path.join(class_dir, f"{index:04d}.png"))


def split_indices(labels, classes, train_per_class=None, train_fraction=0.8, seed=0):
    """Train and validation indices of the images of ``classes``.

    Args:
        labels: every image's label.
        classes: the classes to keep.
        train_per_class: training images per class (the rest validate); None =
            ``train_fraction`` of each class.
        train_fraction: used when ``train_per_class`` is None.
        seed: seed of the shuffle within each class.

    Returns:
        ``(train indices, validation indices)``.
    """
    rng = np.random.RandomState(seed)
    train, val = [], []
    for label in classes:
        members = rng.permutation(np.flatnonzero(labels == label))
        count = train_per_class if train_per_class is not None else int(round(train_fraction * len(members)))
        train.extend(members[:count])
        val.extend(members[count:])
    return np.array(train), np.array(val)


def write_datasets(root=DATA_DIR, labelled_per_class=10, image_size=16, seed=0):
    """Writes the study's two image folders (``folder:`` datasets) under ``root``.

    ``root/source/{train,val}``: digits 0-4, 80% / 20% of each class.
    ``root/target/{train,val}``: digits 5-9, ``labelled_per_class`` training
    images per class, every other image of those classes for validation.

    Args:
        root: output directory (replaced if it exists with other settings).
        labelled_per_class: labelled target images per class.
        image_size: side length of the PNGs.
        seed: seed of the splits.

    Returns:
        ``{"source": (train, val), "target": (train, val)}`` image counts.
    """
    settings = dict(labelled_per_class=labelled_per_class, image_size=image_size, seed=seed)
    marker = os.path.join(root, "settings.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == settings:
                return _counts(root)
        shutil.rmtree(root)
    images, labels = digits_images(image_size)
    splits = {
        "source": split_indices(labels, SOURCE_CLASSES, seed=seed),
        "target": split_indices(labels, TARGET_CLASSES, train_per_class=labelled_per_class, seed=seed),
    }
    for name, (train, val) in splits.items():
        _save(images[train], labels[train], os.path.join(root, name, "train"))
        _save(images[val], labels[val], os.path.join(root, name, "val"))
    with open(marker, "w") as f:
        json.dump(settings, f)
    return _counts(root)


def _counts(root):
    def count(path):
        return sum(len(files) for _, _, files in os.walk(path))

    return {
        name: (count(os.path.join(root, name, "train")), count(os.path.join(root, name, "val")))
        for name in ("source", "target")
    }
