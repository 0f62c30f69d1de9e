"""Data: augmentation, pipelines, tfds loading (mocked) and user image folders."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from helpers import plugins

from sskt_tf import data
from sskt_tf.data import pad_crop_flip
from sskt_tf.errors import ConfigError


def test_pad_crop_flip_is_a_shifted_maybe_flipped_copy():
    # Pixel value encodes its position: 8 * row + col + 1 (0 only in the padding).
    image = tf.reshape(tf.range(1, 8 * 8 + 1, dtype=tf.int32), (8, 8, 1))
    directions, shifted = set(), False
    for seed in range(40):
        out = pad_crop_flip(image, tf.constant([seed, 7]), padding=2).numpy()[..., 0]
        again = pad_crop_flip(image, tf.constant([seed, 7]), padding=2).numpy()[..., 0]
        np.testing.assert_array_equal(out, again)  # same seed, same crop and flip
        inside = out > 0
        horizontal = (out[:, 1:] - out[:, :-1])[inside[:, 1:] & inside[:, :-1]]
        vertical = (out[1:] - out[:-1])[inside[1:] & inside[:-1]]
        assert len(set(horizontal.tolist())) == 1 and set(vertical.tolist()) == {8}
        directions.add(int(horizontal[0]))  # +1 as is, -1 mirrored
        shifted |= bool((~inside).any())
    assert directions == {1, -1} and shifted


def _examples(n=20, size=8):
    images = np.random.RandomState(0).randint(0, 256, (n, size, size, 3)).astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(n) % 3))


def test_train_pipeline_is_seeded_and_changes_every_epoch():
    def epochs(seed):
        ds = data.train_pipeline(_examples(), batch_size=4, seed=seed)
        return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(2)]

    first, second = epochs(3), epochs(3)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])
    batch_x, batch_y = next(iter(data.train_pipeline(_examples(), batch_size=4, seed=1)))
    assert batch_x.dtype == tf.float32 and float(tf.reduce_max(batch_x)) <= 255.0 and batch_x.shape == (4, 8, 8, 3)


def _keyed_epochs(start_epoch, epochs=4, steps=3, seed=5, n=20, batch_size=4):
    batches = data.keyed_train_pipeline(
        _examples(n), batch_size, steps, n, seed=seed, start_epoch=start_epoch, epochs=epochs
    ).as_numpy_iterator()
    flat = [np.concatenate([x.reshape(len(x), -1), y[:, None]], axis=1) for x, y in batches]
    return [np.concatenate(flat[i : i + steps]) for i in range(0, len(flat), steps)]


def test_keyed_train_pipeline_epochs_depend_only_on_seed_and_epoch():
    from_zero = _keyed_epochs(0)
    assert len(from_zero) == 4 and all(epoch.shape[0] == 3 * 4 for epoch in from_zero)
    # Another process or worker, or a run resumed at epoch 2, sees the same batches.
    tf.random.uniform([5])  # other random work before does not matter
    np.testing.assert_array_equal(_keyed_epochs(0)[1], from_zero[1])
    resumed = _keyed_epochs(2)
    assert len(resumed) == 2
    np.testing.assert_array_equal(resumed[0], from_zero[2])
    np.testing.assert_array_equal(resumed[1], from_zero[3])
    # Every epoch is another order and other crops; another seed, other batches.
    assert not np.array_equal(from_zero[0], from_zero[1])
    assert not np.array_equal(_keyed_epochs(0, seed=6)[0], from_zero[0])


def test_keyed_train_pipeline_fills_long_epochs_from_more_permutations():
    # 7 batches of 4 from 10 examples: every pass of 10 holds each example once, then another pass.
    no_crop = data.keyed_train_pipeline(_examples(10), 4, 7, 10, seed=0, augment=False, epochs=1)
    images = np.concatenate([x for x, _ in no_crop.as_numpy_iterator()])
    assert images.shape[0] == 28
    originals = np.stack([image for image, _ in _examples(10).as_numpy_iterator()]).astype(np.float32)
    for start in (0, 10):  # each pass holds every example once
        pass_images = images[start : start + 10]
        assert sorted(map(bytes, pass_images.reshape(10, -1).astype(np.uint8))) == sorted(
            map(bytes, originals.reshape(10, -1).astype(np.uint8))
        )


def test_train_pipeline_drops_partial_batches_and_eval_keeps_them():
    assert sum(1 for _ in data.train_pipeline(_examples(10), batch_size=4, seed=0)) == 2
    assert [x.shape[0] for x, _ in data.eval_pipeline(_examples(10), batch_size=4)] == [4, 4, 2]


def test_tfds_load_with_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        loaded = data.load("cifar10", batch_size=4, seed=0)
        x, y = next(iter(loaded.train))
    assert loaded.num_classes == 10 and loaded.image_size == 32 and loaded.mean is not None
    assert x.shape == (4, 32, 32, 3) and y.shape == (4,)


def test_tfds_resize_to_image_size():
    with tfds.testing.mock_data(num_examples=8):
        loaded = data.load("stl10", batch_size=4, image_size=48)
        x, _ = next(iter(loaded.val))
    assert loaded.image_size == 48 and x.shape == (4, 48, 48, 3)


def test_missing_tfds_data_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"not prepared in .* --download is off.*tfds build cifar10"):
        data.load("cifar10", batch_size=4, data_dir=str(tmp_path), download=False)


def test_offline_download_is_a_clear_error(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to establish a new connection: [Errno -2] Name or service not known")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(ConfigError, match=r"Could not download dataset 'cifar100'.*ConnectionError.*--data_dir"):
        data.load("cifar100", batch_size=4, data_dir=str(tmp_path))


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ConfigError, match="Unknown dataset 'cifar11'"):
        data.load("cifar11", batch_size=4)


def test_folder_dataset(digits_folder):
    loaded = data.load(f"folder:{digits_folder}", batch_size=10, image_size=16, seed=0)
    assert loaded.num_classes == 10 and loaded.class_names[0] == "digit0" and loaded.train_examples == 300
    x, y = next(iter(loaded.train))
    assert x.shape == (10, 16, 16, 3) and int(tf.reduce_max(y)) < 10
    assert sum(int(x.shape[0]) for x, _ in loaded.val) == 100
    assert all(0 < m < 255 for m in loaded.mean)
    # Training files are mixed across classes once (the folder lists them class by class).
    first_labels = [int(label) for _, label in data.load_folder(str(digits_folder), 16, seed=0)[0].take(50)]
    assert len(set(first_labels)) >= 8


def test_folder_skips_corrupt_images(tmp_path, digits_folder):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(digits_folder, root)
    (root / "val" / "digit0" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    loaded = data.load(f"folder:{root}", batch_size=10, image_size=16)
    assert sum(int(x.shape[0]) for x, _ in loaded.val) == 100


def test_folder_errors(tmp_path, digits_folder):
    with pytest.raises(ConfigError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'nope'}", batch_size=4)
    (tmp_path / "flat").mkdir()
    with pytest.raises(ConfigError, match="must contain train/"):
        data.load(f"folder:{tmp_path / 'flat'}", batch_size=4)
    import shutil

    root = tmp_path / "mismatch"
    shutil.copytree(digits_folder, root)
    os.rename(root / "val" / "digit3", root / "val" / "three")
    with pytest.raises(ConfigError, match=r"has classes that train/ lacks: \['three'\]"):
        data.load(f"folder:{root}", batch_size=4)


@pytest.fixture
def npz_kind(tmp_path, digits):
    """A dataset kind registered from outside the package: ``npz:FILE`` of train/val arrays."""
    with plugins.npz_dataset_kind(tmp_path / "digits.npz", digits) as path:
        yield path


def test_a_registered_dataset_kind_is_loaded_checked_and_named_by_its_prefix(npz_kind, tmp_path):
    from absl import flags

    from sskt_tf.training.flags import config_from_command_line, define_flags

    loaded = data.load(f"npz:{npz_kind}", batch_size=50, seed=0)
    images, labels = next(iter(loaded.train))
    assert loaded.num_classes == 10 and loaded.train_examples == 200 and images.shape == (50, 16, 16, 3)
    assert not data.is_video_dataset(f"npz:{npz_kind}")
    assert data.missing_data(f"npz:{npz_kind}") == []
    assert [item.what for item in data.missing_data("npz:/nowhere.npz")] == ["/nowhere.npz is not there."]
    values = flags.FlagValues()
    define_flags(values)
    values(["train.py", f"--dataset=npz:{npz_kind}"])
    with pytest.raises(ConfigError, match="needs --sources"):  # the user's own files: name the sources
        config_from_command_line(values)
    with pytest.raises(ConfigError, match="cannot serve as unlabelled images"):
        data.UnlabeledImages(dataset=f"npz:{npz_kind}").check(None)
    with pytest.raises(ConfigError, match="holds images, not videos"):
        data.load_video(f"npz:{npz_kind}", batch_size=4)


def test_dataset_kinds_take_their_prefixes_and_tfds_the_rest(tmp_path):
    from sskt_tf.data import kinds

    assert [(kind.name, kind.prefix) for kind in kinds.kinds()] == [
        ("folder", "folder:"),
        ("video_folder", "video_folder:"),
        ("tfds", None),
    ]
    assert kinds.resolve("video_folder:~/v")[0].name == "video_folder" and kinds.resolve("cifar10")[1] == "cifar10"
    with pytest.raises(ValueError, match="takes the prefix of"):
        kinds.register(kinds.DatasetKind("images", "another folder kind", prefix="folder:"))
    with pytest.raises(ConfigError, match=f"--dataset={tmp_path} is a directory: use --dataset=folder:{tmp_path} or"):
        kinds.resolve(str(tmp_path))[0].check(str(tmp_path))
