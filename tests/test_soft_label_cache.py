"""The soft-label cache: round trip, equivalence with online training, refusals, resume."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers.in_process import run_script

from sskt_tf import SSKTModel, TrainConfig, data, soft_labels, sources, targets, training
from sskt_tf.data import views
from sskt_tf.errors import ConfigError

EXAMPLES = 96


@pytest.fixture(scope="module")
def splits(digits):
    train_x, train_y, val_x, val_y = digits
    info = dict(num_classes=10, class_names=[str(i) for i in range(10)], train_examples=EXAMPLES, mean=None, std=None)
    return data.Splits(
        train=tf.data.Dataset.from_tensor_slices((train_x[:EXAMPLES], train_y[:EXAMPLES])),
        val=tf.data.Dataset.from_tensor_slices((val_x[:64], val_y[:64])),
        image_size=16,
        info=info,
    )


@pytest.fixture(scope="module")
def config(tiny_source_path):
    return TrainConfig(dataset="digits_test", sources=[tiny_source_path], seed=3, batch_size=32, verbose=0)


def _source(config):
    return sources.from_spec(config.sources[0], 16)


def _write(config, splits, directory, **kwargs):
    kwargs.setdefault("examples_per_shard", 40)
    return soft_labels.write(
        config, splits, [_source(config)], str(directory), kwargs.pop("views", 2), verbose=0, **kwargs
    )


def _records(cache, view):
    """``{index: [logits per source]}`` of one view, read back through the cache's own parser."""
    files = [os.path.join(cache.directory, shard["file"]) for shard in cache.manifest["shards"][view]]
    parsed = tf.data.TFRecordDataset(files).map(cache._parse)
    return {int(index): [source_logits.numpy() for source_logits in logits] for index, _, logits in parsed}


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-6), ("float16", 2e-3)])
def test_cached_logits_are_the_sources_outputs_on_the_same_views(config, splits, tmp_path, dtype, tolerance):
    manifest = _write(config, splits, tmp_path, dtype=dtype)
    assert [sum(s["examples"] for s in shards) for shards in manifest["shards"]] == [EXAMPLES, EXAMPLES]
    assert len(manifest["shards"][0]) == 3  # 40 + 40 + 16 records
    cache = soft_labels.SoftLabelCache(str(tmp_path))
    source = _source(config)
    images = np.stack([image for image, _ in splits.train.as_numpy_iterator()])
    for view in range(2):
        augmented = np.stack(
            [
                views.augment_view(
                    tf.constant(image), tf.constant(i, tf.int64), tf.constant(view, tf.int64), config.seed
                ).numpy()
                for i, image in enumerate(images)
            ]
        )
        expected = source(augmented.astype("float32")).numpy()
        cached = _records(cache, view)
        assert sorted(cached) == list(range(EXAMPLES))
        got = np.stack([cached[i][0] for i in range(EXAMPLES)])
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    # The two views really are different augmentations.
    assert not np.allclose(
        np.stack([_records(cache, 0)[i][0] for i in range(8)]), np.stack([_records(cache, 1)[i][0] for i in range(8)])
    )


def test_top_k_keeps_the_largest_logits_and_fills_the_rest(config, splits, tmp_path):
    _write(config, splits, tmp_path / "full", views=1, dtype="float32")
    _write(config, splits, tmp_path / "top2", views=1, dtype="float32", top_k=2)
    full = _records(soft_labels.SoftLabelCache(str(tmp_path / "full")), 0)
    top2 = _records(soft_labels.SoftLabelCache(str(tmp_path / "top2")), 0)
    for index in range(EXAMPLES):
        logits, kept = full[index][0], top2[index][0]
        best = np.argsort(-logits)[:2]
        np.testing.assert_allclose(kept[best], logits[best], rtol=1e-6)
        assert np.all(np.delete(kept, best) == soft_labels.TOP_K_FILL)


def _identical_models(soft_source):
    keras.utils.set_random_seed(5)
    target = targets.cifar_resnet(20, 10, input_shape=(16, 16, 3))
    model = SSKTModel(target, [soft_source])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), weight_decay=5e-4)
    return model


@pytest.mark.slow
def test_training_from_the_cache_matches_online_training_on_the_same_views(config, splits, tmp_path):
    _write(config, splits, tmp_path, dtype="float32")
    cache = soft_labels.SoftLabelCache(str(tmp_path))
    cached_batches = cache.train_pipeline(splits.train, 32, seed=7, start_epoch=0, epochs=2, steps_per_epoch=3)
    (cached_inputs, cached_labels), *_ = cached_batches.take(1).as_numpy_iterator()

    # Online: the same view 0, the same epoch order, the sources run inside the step.
    indexed = splits.train.enumerate().map(lambda i, example: dict(index=i, image=example[0], label=example[1]))
    epoch = views.shuffled_epoch(indexed, 0, 7, EXAMPLES)
    online_images, online_labels = next(iter(views.view_batches(epoch, 0, 32, config.seed)))
    np.testing.assert_array_equal(online_images.numpy(), cached_inputs["images"])
    np.testing.assert_array_equal(online_labels.numpy(), cached_labels)

    online = _identical_models(_source(config))
    from_cache = _identical_models(cache.placeholder_sources()[0])
    online_loss = online.train_on_batch(online_images, online_labels, return_dict=True)
    cached_loss = from_cache.train_on_batch(cached_inputs, cached_labels, return_dict=True)
    assert cached_loss["loss"] == pytest.approx(online_loss["loss"], rel=1e-5)
    assert cached_loss["aux_tiny_loss"] == pytest.approx(online_loss["aux_tiny_loss"], rel=1e-5)
    for a, b in zip(online.target.weights, from_cache.target.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)


def test_epochs_cycle_through_the_views_in_a_fixed_order(config, splits, tmp_path):
    _write(config, splits, tmp_path, dtype="float32", views=2)
    cache = soft_labels.SoftLabelCache(str(tmp_path))
    # {logits bytes: example index} of each view: which example (and view) a served soft label is.
    index_of = [{logits[0].tobytes(): index for index, logits in _records(cache, view).items()} for view in range(2)]

    def epochs_from(start_epoch):
        batches = list(
            cache.train_pipeline(splits.train, 32, seed=1, start_epoch=start_epoch, epochs=4).as_numpy_iterator()
        )
        assert len(batches) == 3 * (4 - start_epoch)  # 96 // 32 batches per epoch
        return [np.concatenate([b[0]["soft_labels"][0] for b in batches[i : i + 3]]) for i in range(0, len(batches), 3)]

    from_zero, resumed = epochs_from(0), epochs_from(2)
    for epoch, served in enumerate(from_zero):
        # Epoch e serves view e mod 2's soft labels, each example exactly once.
        indices = [index_of[epoch % 2].get(row.tobytes()) for row in served]
        assert sorted(indices) == list(range(EXAMPLES)), f"epoch {epoch} did not serve view {epoch % 2}"
        if epoch:
            previous = [index_of[(epoch - 1) % 2][row.tobytes()] for row in from_zero[epoch - 1]]
            assert indices != previous  # a new order every epoch
    # A resumed run (from epoch 2) sees exactly the batches of an uninterrupted one.
    np.testing.assert_array_equal(from_zero[2], resumed[0])
    np.testing.assert_array_equal(from_zero[3], resumed[1])


def test_mismatched_caches_are_refused_with_every_difference(config, splits, tmp_path):
    _write(config, splits, tmp_path)
    cache = soft_labels.SoftLabelCache(str(tmp_path))
    cache.check(config, 16, EXAMPLES)  # the run it was made for
    other = dataclasses.replace(config, dataset="cifar10", source_scale="2", sources=["imagenet/resnet50"])
    with pytest.raises(
        ConfigError, match=r"--dataset: cache 'digits_test', this run 'cifar10'.*--sources.*--source_scale"
    ):
        cache.check(other, 16, EXAMPLES)
    with pytest.raises(ConfigError, match="image_size"):
        cache.check(config, 32, EXAMPLES)
    with pytest.raises(ConfigError, match="train_examples"):
        cache.check(config, 16, EXAMPLES + 1)


def test_a_source_file_replaced_by_one_of_the_same_size_is_refused(config, splits, tmp_path, tiny_source_path):
    source_file = tmp_path / "teacher.keras"
    teacher = keras.saving.load_model(tiny_source_path)
    teacher.save(str(source_file))
    teacher_config = dataclasses.replace(config, sources=[str(source_file)])
    _write(teacher_config, splits, tmp_path / "cache", views=1)
    cache = soft_labels.SoftLabelCache(str(tmp_path / "cache"))
    cache.check(teacher_config, 16, EXAMPLES)
    # "Fine-tune" the teacher: same architecture, same file size, other weights.
    size = source_file.stat().st_size
    teacher.set_weights([w * 1.01 for w in teacher.get_weights()])
    teacher.save(str(source_file))
    assert source_file.stat().st_size == size  # only the content tells
    with pytest.raises(ConfigError, match=r"--sources: cache \['sha256:[0-9a-f]{64}'\], this run \['sha256:"):
        cache.check(teacher_config, 16, EXAMPLES)


def test_the_same_source_file_under_another_path_is_accepted(config, splits, tmp_path, tiny_source_path, monkeypatch):
    # A cache built with a relative path serves a run that names the file absolutely (or
    # from another checkout): files are compared by content.
    monkeypatch.chdir(os.path.dirname(tiny_source_path))
    relative = dataclasses.replace(config, sources=[os.path.basename(tiny_source_path)])
    _write(relative, splits, tmp_path / "cache", views=1)
    cache = soft_labels.SoftLabelCache(str(tmp_path / "cache"))
    cache.check(dataclasses.replace(config, sources=[tiny_source_path]), 16, EXAMPLES)
    copy = tmp_path / "copy.keras"
    copy.write_bytes(open(tiny_source_path, "rb").read())
    cache.check(dataclasses.replace(config, sources=[str(copy)]), 16, EXAMPLES)


def test_other_images_under_the_same_settings_fail_the_fingerprint_check(config, splits, tmp_path):
    _write(config, splits, tmp_path, views=1)
    cache = soft_labels.SoftLabelCache(str(tmp_path))
    flipped = splits.train.map(lambda image, label: (tf.image.flip_up_down(image), label))
    with pytest.raises(tf.errors.InvalidArgumentError, match=soft_labels.MISMATCH_MARKER):
        list(cache.train_pipeline(flipped, 32, seed=1).take(1))


def test_missing_unfinished_and_damaged_caches_are_clear_errors(config, splits, tmp_path):
    with pytest.raises(ConfigError, match="No soft-label cache.*cache_soft_labels.py"):
        soft_labels.SoftLabelCache(str(tmp_path / "nothing"))
    _write(config, splits, tmp_path, views=2)
    os.remove(tmp_path / soft_labels.MANIFEST)
    with pytest.raises(ConfigError, match="unfinished"):
        soft_labels.SoftLabelCache(str(tmp_path))
    # Rerunning the same command finishes it; other settings are refused.
    with pytest.raises(ConfigError, match="other settings"):
        _write(config, splits, tmp_path, views=3)
    with pytest.raises(ConfigError, match="other settings"):  # views must share one shard layout
        _write(config, splits, tmp_path, views=2, examples_per_shard=30)
    _write(config, splits, tmp_path, views=2)
    shard = tmp_path / soft_labels.SoftLabelCache(str(tmp_path)).manifest["shards"][1][0]["file"]
    with open(shard, "ab") as f:
        f.write(b"junk")
    with pytest.raises(ConfigError, match="missing or damaged"):
        soft_labels.SoftLabelCache(str(tmp_path))
    with pytest.raises(ConfigError, match="already holds a complete"):
        _write(config, splits, tmp_path, views=2)


def test_an_interrupted_write_resumes_with_the_unfinished_views(config, splits, tmp_path, monkeypatch):
    written = []
    original = soft_labels.writer._write_view

    def fail_on_second_view(directory, view, *args):
        if view == 1:
            raise KeyboardInterrupt
        written.append(view)
        return original(directory, view, *args)

    monkeypatch.setattr(soft_labels.writer, "_write_view", fail_on_second_view)
    with pytest.raises(KeyboardInterrupt):
        _write(config, splits, tmp_path, views=3)
    monkeypatch.setattr(
        soft_labels.writer,
        "_write_view",
        lambda directory, view, *args: written.append(view) or original(directory, view, *args),
    )
    _write(config, splits, tmp_path, views=3)
    assert written == [0, 1, 2]  # view 0 was not computed again
    assert soft_labels.SoftLabelCache(str(tmp_path)).views == 3


def test_cached_source_placeholder_refuses_to_run_without_soft_labels(config, splits, tmp_path, digits):
    model = _identical_models(soft_labels.CachedSource(5, name="tiny"))
    with pytest.raises(ConfigError, match="placeholder for cached soft labels"):
        model.train_on_batch(digits[0][:8].astype("float32"), digits[1][:8])


@pytest.mark.slow
def test_train_and_cache_tools_end_to_end(digits_folder, tiny_source_path, tmp_path):
    cache_dir, run_dir = tmp_path / "cache", tmp_path / "run"
    common = [
        f"--dataset=folder:{digits_folder}",
        "--image_size=16",
        f"--sources={tiny_source_path}",
        "--seed=2",
        "--batch_size=50",
        f"--soft_label_cache={cache_dir}",
        "--verbose=0",
    ]
    made = run_script(["tools/cache_soft_labels.py", *common, "--views=2", "--cache_batch_size=128"])
    assert made.returncode == 0, made.stderr[-3000:]
    summary = json.loads(made.stdout.strip().splitlines()[-1])
    assert summary["views"] == 2 and summary["files"] == 2
    trained = run_script(["tools/train.py", *common, "--epochs=3", "--lr_milestones=2", f"--model_dir={run_dir}"])
    assert trained.returncode == 0, trained.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["soft_label_cache_views"] == 2 and results["epochs"] == 3
    assert "aux_tiny_loss" in results and "val_aux_tiny_loss" not in results
    # Another source set is refused before any training, with exit code 2.
    refused = run_script(
        [
            "tools/train.py",
            *[f for f in common if not f.startswith("--sources")],
            "--sources=imagenet/resnet50",
            "--epochs=1",
            f"--model_dir={tmp_path / 'other'}",
        ]
    )
    assert refused.returncode == 2 and "was made for another run" in refused.stderr


@pytest.mark.slow
def test_a_cache_run_killed_after_its_last_backup_finishes_on_rerun(
    digits_folder, tiny_source_path, tmp_path, monkeypatch
):
    # Killed between the last epoch's backup and results.json: the rerun has no epoch left
    # (and no batch left in the cache pipeline), under a strategy whose fit would need one.
    config = TrainConfig(
        dataset=f"folder:{digits_folder}",
        image_size=16,
        sources=[tiny_source_path],
        seed=2,
        batch_size=50,
        epochs=1,
        soft_label_cache=str(tmp_path / "cache"),
        verbose=0,
        model_dir=str(tmp_path / "run"),
        distribution_strategy="one_device",
    )
    training.build_soft_label_cache(config, views=1)
    monkeypatch.setattr(training.backup.FiniteBackupAndRestore, "delete", lambda self: None)
    first = training.train(config)
    os.remove(tmp_path / "run" / "results.json")
    again = training.train(config)
    assert again["resumed_from_epoch"] == 1 and again["epochs"] == 1
    assert again["val_accuracy"] == pytest.approx(first["val_accuracy"])


def test_the_shuffle_control_keeps_each_batchs_soft_labels_and_breaks_their_pairing(config, splits, tmp_path):
    _write(config, splits, tmp_path / "real", views=1, dtype="float32", batch_size=32)
    manifest = _write(config, splits, tmp_path / "shuffled", views=1, dtype="float32", batch_size=32, control="shuffle")
    assert manifest["settings"]["control"] == "shuffle"
    real = _records(soft_labels.SoftLabelCache(str(tmp_path / "real")), 0)
    shuffled = _records(soft_labels.SoftLabelCache(str(tmp_path / "shuffled")), 0)
    moved = 0
    for start in range(0, EXAMPLES, 32):  # each batch of the writer: the same rows, other images
        batch = range(start, start + 32)
        assert sorted(tuple(np.round(real[i][0], 5)) for i in batch) == sorted(
            tuple(np.round(shuffled[i][0], 5)) for i in batch
        )
        moved += sum(not np.allclose(real[i][0], shuffled[i][0]) for i in batch)
    assert moved > EXAMPLES * 0.8
    # The training pipeline reads the control's logits like any cache's.
    assert soft_labels.SoftLabelCache(str(tmp_path / "shuffled")).examples == EXAMPLES


def test_the_spread_control_gives_every_logit_vector_one_standard_deviation():
    from sskt_tf.soft_labels.writer import control_logits, parse_control

    near_constant = np.array([[1e-12, 3e-12, -2e-12, 0.0], [5.0, 5.0, 5.0, 5.0]], np.float32)
    (scaled,) = control_logits([near_constant], parse_control("spread:2.5"), (0, 0, 0))
    np.testing.assert_allclose(scaled[0].std(), 2.5, rtol=1e-5)
    np.testing.assert_allclose(scaled[0].mean(), 0.0, atol=1e-5)
    assert scaled[0].argmax() == 1 and scaled[1].tolist() == [0.0] * 4  # order kept; a constant row stays flat
    for bad in ("spread:0", "spread:x", "shuffle:1", "rotate"):
        with pytest.raises(ConfigError, match="Unknown --soft_label_control"):
            parse_control(bad)


def _second_source(tmp_path, tiny_source_path):
    """The tiny source with other weights, saved under another name (another head)."""
    other = keras.saving.load_model(tiny_source_path)
    other.set_weights([w * 1.5 for w in other.get_weights()])
    path = tmp_path / "other.keras"
    other.save(str(path))
    return str(path)


def test_merged_single_source_caches_equal_a_cache_of_both_sources(config, splits, tmp_path, tiny_source_path):
    other = _second_source(tmp_path, tiny_source_path)
    both = dataclasses.replace(config, sources=[tiny_source_path, other])
    _write(config, splits, tmp_path / "tiny", dtype="float32")
    _write(dataclasses.replace(config, sources=[other]), splits, tmp_path / "other", dtype="float32")
    soft_labels.write(
        both,
        splits,
        [sources.from_spec(spec, 16) for spec in both.sources],
        str(tmp_path / "both"),
        2,
        dtype="float32",
        examples_per_shard=40,
        verbose=0,
    )
    manifest = soft_labels.merge([str(tmp_path / "tiny"), str(tmp_path / "other")], str(tmp_path / "merged"))
    assert [source["name"] for source in manifest["sources"]] == ["tiny", "other"]
    merged = soft_labels.SoftLabelCache(str(tmp_path / "merged"))
    direct = soft_labels.SoftLabelCache(str(tmp_path / "both"))
    merged.check(both, 16, EXAMPLES)  # serves the run with both sources, in that order
    with pytest.raises(ConfigError, match="--sources"):
        merged.check(dataclasses.replace(config, sources=[other, tiny_source_path]), 16, EXAMPLES)
    for view in range(2):
        got, expected = _records(merged, view), _records(direct, view)
        assert sorted(got) == sorted(expected) == list(range(EXAMPLES))
        for index in range(EXAMPLES):
            for got_logits, expected_logits in zip(got[index], expected[index], strict=True):
                np.testing.assert_allclose(got_logits, expected_logits, rtol=1e-5, atol=1e-6)
    # The merged cache trains like any other: its batches carry both sources' soft labels.
    (inputs, _), *_ = merged.train_pipeline(splits.train, 32, seed=1, epochs=1).take(1).as_numpy_iterator()
    assert [logits.shape for logits in inputs["soft_labels"]] == [(32, 5), (32, 5)]


def test_caches_that_differ_in_more_than_their_sources_are_not_merged(config, splits, tmp_path, tiny_source_path):
    other_config = dataclasses.replace(config, sources=[_second_source(tmp_path, tiny_source_path)])
    _write(config, splits, tmp_path / "tiny")
    _write(other_config, splits, tmp_path / "three_views", views=3)
    _write(config, splits, tmp_path / "shuffled", control="shuffle")
    _write(other_config, splits, tmp_path / "other")
    with pytest.raises(ConfigError, match=r"cannot be merged: views: .* has 2, .* has 3"):
        soft_labels.merge([str(tmp_path / "tiny"), str(tmp_path / "three_views")], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="holds a control"):
        soft_labels.merge([str(tmp_path / "shuffled"), str(tmp_path / "other")], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="source name.*tiny.*own head"):
        soft_labels.merge([str(tmp_path / "tiny"), str(tmp_path / "tiny")], str(tmp_path / "out"))
    with pytest.raises(ConfigError, match="at least two"):
        soft_labels.merge([str(tmp_path / "tiny")], str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")  # nothing written by a refused merge
    # Through the tool: a merge, then the same merge again (refused, exit 2, nothing lost).
    command = ["tools/cache_soft_labels.py", f"--merge={tmp_path / 'tiny'},{tmp_path / 'other'}"]
    made = run_script([*command, f"--soft_label_cache={tmp_path / 'out'}"])
    assert made.returncode == 0, made.stderr[-3000:]
    assert json.loads(made.stdout.strip().splitlines()[-1])["views"] == 2
    again = run_script([*command, f"--soft_label_cache={tmp_path / 'out'}"])
    assert again.returncode == 2 and "already holds a complete soft-label cache" in again.stderr
    assert soft_labels.SoftLabelCache(str(tmp_path / "out")).source_classes == [("tiny", 5), ("other", 5)]
