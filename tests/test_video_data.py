"""Clips from videos: temporal sampling, the multi-scale corner crop and the centre crop against their definitions."""

import numpy as np
import pytest
import tensorflow as tf

from sskt_tf.data import clips


def _numbered_video(frames, height=6, width=8):
    """uint8 video whose pixel values encode (frame, row, column): frame f, row r, col c -> f, r, c in the channels."""
    f, r, c = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([f, r, c], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(
    "start, length, frames, expected",
    [
        (0, 4, 10, [0, 1, 2, 3]),
        (7, 4, 10, [7, 8, 9, 7]),  # runs past the end: loops over the clip's own frames
        (0, 7, 3, [0, 1, 2, 0, 1, 2, 0]),  # a short video is loop-padded
        (2, 5, 3, [2, 2, 2, 2, 2]),
    ],
)
def test_loop_indices(start, length, frames, expected):
    assert clips.loop_indices(start, length, frames).numpy().tolist() == expected


def test_random_start_covers_every_start_where_a_clip_fits_and_nothing_else():
    starts = {int(clips.random_start(20, 16, tf.constant([seed, 0]))) for seed in range(200)}
    assert starts == {0, 1, 2, 3, 4}
    assert {int(clips.random_start(9, 16, tf.constant([seed, 1]))) for seed in range(20)} == {0}


def test_centre_start_and_clip_starts():
    assert int(clips.centre_start(100, 16)) == 42 and int(clips.centre_start(10, 16)) == 0
    assert clips.clip_starts(40, 16).numpy().tolist() == [0, 16, 32]
    assert clips.clips_per_video(40, 16) == 3 and clips.clips_per_video(5, 16) == 1


@pytest.mark.parametrize(
    "position, expected",
    [(0, (1, 3)), (1, (0, 0)), (2, (0, 7)), (3, (3, 0)), (4, (3, 7))],  # centre, then the four corners
)
def test_corner_crop_box(position, expected):
    top, left, side = clips.corner_crop_box(tf.constant(18), tf.constant(22), 2.0 ** (-1 / 4), position)
    assert int(side) == int(18 * 2 ** (-1 / 4)) == 15  # scale times the short side
    assert (int(top), int(left)) == expected


def test_multiscale_corner_crop_is_one_of_the_defined_crops_the_same_for_every_frame():
    video = _numbered_video(4, 16, 20).astype(np.float32) * 10
    seen = set()
    for seed in range(60):
        out = clips.multiscale_corner_crop(video, 8, tf.constant([seed, 3])).numpy()
        assert out.shape == (4, 8, 8, 3)
        np.testing.assert_allclose(out[:, :, :, 0], np.arange(4)[:, None, None] * 10.0 * np.ones((4, 8, 8)), atol=1e-3)
        np.testing.assert_allclose(out[0, ..., 1:], out[3, ..., 1:], atol=1e-3)  # same crop on every frame
        matches = []
        for scale in clips.CROP_SCALES:
            for position in range(5):
                top, left, side = clips.corner_crop_box(tf.constant(16), tf.constant(20), scale, position)
                crop = video[:, int(top) : int(top) + int(side), int(left) : int(left) + int(side)]
                expected = tf.image.resize(crop, (8, 8), antialias=True).numpy()
                if np.allclose(out, expected, atol=1e-3):
                    matches.append((round(scale, 3), position))
        assert len(matches) >= 1
        seen.add(matches[0])
    assert len(seen) >= 15  # many of the 25 scale x position choices are drawn


def test_centre_crop_resizes_the_short_side_then_crops_the_middle():
    video = _numbered_video(2, 10, 30).astype(np.float32)
    out = clips.centre_crop(video, 5).numpy()
    resized = tf.image.resize(video, (5, 15), antialias=True).numpy()
    np.testing.assert_allclose(out, resized[:, :, 5:10], atol=1e-4)


def test_training_clip_draws_once_per_clip_and_is_reproducible():
    video = _numbered_video(30, 12, 12)
    a = clips.training_clip(video, 16, 8, tf.constant([1, 2])).numpy()
    b = clips.training_clip(video, 16, 8, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(a, b)
    frames = np.round(a[:, 0, 0, 0]).astype(int)
    assert frames.tolist() == list(range(frames[0], frames[0] + 16))  # consecutive frames
    starts = {int(np.round(clips.training_clip(video, 16, 8, tf.constant([s, 0]))[0, 0, 0, 0])) for s in range(40)}
    assert len(starts) > 5
    val = clips.training_clip(video, 16, 8, tf.constant([1, 2]), augment=False).numpy()
    np.testing.assert_array_equal(val, clips.validation_clip(video, 16, 8).numpy())
    assert np.round(val[:, 0, 0, 0]).astype(int).tolist() == list(range(7, 23))  # the centre 16 of 30 frames


def test_every_clip_tiles_the_video_and_loop_pads_the_last():
    video = _numbered_video(20, 8, 8)
    out = clips.every_clip(video, 8, 4).numpy()
    assert out.shape == (3, 8, 4, 4, 3)
    frames = np.round(out[:, :, 0, 0, 0]).astype(int).tolist()
    assert frames == [list(range(0, 8)), list(range(8, 16)), [16, 17, 18, 19, 16, 17, 18, 19]]


# --- official split lists -------------------------------------------------------------------------------------------


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def test_ucf101_split_lists(tmp_path):
    from sskt_tf.data.video_splits import read_split

    train_list = _write(
        tmp_path / "trainlist01.txt", ["Archery/v_Archery_g08_c01.avi 3", "Bowling/v_Bowling_g09_c02.avi 9"]
    )
    _write(tmp_path / "testlist01.txt", ["Archery/v_Archery_g01_c01.avi"])
    assert read_split(train_list) == (
        ["Archery/v_Archery_g08_c01.avi", "Bowling/v_Bowling_g09_c02.avi"],
        ["Archery/v_Archery_g01_c01.avi"],
    )


def test_hmdb51_split_files(tmp_path):
    from sskt_tf.data.video_splits import read_split

    _write(tmp_path / "brush_hair_test_split1.txt", ["a.avi 1", "b.avi 2", "c.avi 0"])
    _write(tmp_path / "cartwheel_test_split1.txt", ["d.avi 2 "])
    _write(tmp_path / "cartwheel_test_split2.txt", ["d.avi 1"])
    assert read_split(str(tmp_path / "*_test_split1.txt")) == (
        ["brush_hair/a.avi"],
        ["brush_hair/b.avi", "cartwheel/d.avi"],
    )


@pytest.mark.parametrize(
    "files, split, message",
    [
        ({"trainlist01.txt": ["A/x.avi 1"]}, "trainlist01.txt", "needs its test list"),
        ({}, "trainlist02.txt", "does not exist"),
        ({"trainlist01.txt": ["x.avi 1"], "testlist01.txt": []}, "trainlist01.txt", r"trainlist01.txt:1: expected"),
        ({}, "*_test_split1.txt", "No HMDB51 split files match"),
        ({"run_test_split1.txt": ["x.avi 7"]}, "*_test_split1.txt", r"run_test_split1.txt:1: expected"),
        ({"a_test_split1.txt": [], "b_test_split2.txt": []}, "*_test_split*.txt", "several splits"),
        ({"notes.txt": []}, "notes.txt", "pass a UCF101 trainlist0N.txt or a glob"),
    ],
)
def test_bad_split_lists_are_named(tmp_path, files, split, message):
    from sskt_tf.data.video_splits import read_split
    from sskt_tf.errors import ConfigError

    for name, lines in files.items():
        _write(tmp_path / name, lines)
    with pytest.raises(ConfigError, match=message):
        read_split(str(tmp_path / split))


# --- video folders --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """train/ of .avi files (one of them corrupt), val/ of frame folders: moving digits, 4 classes."""
    from helpers.moving_digits import DIRECTIONS, moving_digits
    from helpers.video_files import write_video_folder

    root = tmp_path_factory.mktemp("videos")
    train_x, train_y = moving_digits(12, frames=20, seed=0)
    write_video_folder(str(root), train_x, train_y, DIRECTIONS, "train")
    (root / "train" / "up" / "broken.avi").write_bytes(b"not a video")
    val_x, val_y = moving_digits(4, frames=40, seed=1)
    write_video_folder(str(root), val_x, val_y, DIRECTIONS, "val", kind="frames")
    return str(root), (train_x, train_y), (val_x, val_y)


def test_video_files_and_frame_folders_decode_to_their_frames(video_folder):
    from sskt_tf.data.video_folder import decode_video

    root, (train_x, _), (val_x, val_y) = video_folder
    from helpers.moving_digits import DIRECTIONS

    frames_dir = f"{root}/val/{DIRECTIONS[val_y[0]]}/video000"
    np.testing.assert_array_equal(decode_video(frames_dir), val_x[0])  # PNG frames: exact
    avi = decode_video(f"{root}/train/" + _class_dir_of(root, "video000.avi") + "/video000.avi")
    assert avi.shape == train_x[0].shape and np.abs(avi.astype(int) - train_x[0]).mean() < 2  # MPEG-4: near
    assert decode_video(frames_dir, short_side=16).shape == (40, 16, 16, 3)


def _class_dir_of(root, name):
    import os

    return next(d for d in os.listdir(f"{root}/train") if os.path.exists(f"{root}/train/{d}/{name}"))


def test_video_folder_pipelines_give_clips_and_skip_an_unreadable_video_by_name(video_folder, caplog):
    from sskt_tf import data

    root, _, _ = video_folder
    loaded = data.load_video(f"video_folder:{root}", batch_size=4, clip_length=16, image_size=24, short_side=32, seed=0)
    assert loaded.num_classes == 4 and loaded.class_names == ["down", "left", "right", "up"]
    assert loaded.frames == 16 and loaded.image_size == 24
    with caplog.at_level("WARNING"):
        batches = list(loaded.train)
    assert len(batches) == 3  # 12 readable videos, batches of 4
    assert batches[0][0].shape == (4, 16, 24, 24, 3) and batches[0][0].dtype == tf.float32
    assert any("Skipping unreadable video" in r.message and "broken.avi" in r.message for r in caplog.records)
    val = list(loaded.val)
    assert sum(len(labels) for _, labels in val) == 4
    stacks = list(loaded.video_test)
    assert [tuple(s.shape) for s, _ in stacks] == [(3, 16, 24, 24, 3)] * 4  # 40 frames: 3 clips of 16


def test_video_folder_with_an_official_split_list(tmp_path):
    from helpers.video_files import write_frames_folder

    from sskt_tf import data
    from sskt_tf.errors import ConfigError

    rng = np.random.default_rng(0)
    for name in ("brush_hair/a", "brush_hair/b", "cartwheel/c", "cartwheel/d"):
        write_frames_folder(str(tmp_path / "hmdb" / name), rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8))
    _write(tmp_path / "splits" / "brush_hair_test_split1.txt", ["a 1", "b 2"])
    _write(tmp_path / "splits" / "cartwheel_test_split1.txt", ["c 1", "d 2"])
    loaded = data.load_video(
        f"video_folder:{tmp_path / 'hmdb'}", 2, clip_length=4, image_size=8, split=str(tmp_path / "splits" / "*1.txt")
    )
    assert loaded.train_examples == 2 and [int(label) for _, label in loaded.video_test] == [0, 1]
    _write(tmp_path / "splits" / "dancing_test_split1.txt", ["e 1"])
    with pytest.raises(ConfigError, match="names classes that .* has no folder for: dancing"):
        data.load_video(f"video_folder:{tmp_path / 'hmdb'}", 2, split=str(tmp_path / "splits" / "*1.txt"))
    (tmp_path / "splits" / "dancing_test_split1.txt").unlink()
    _write(tmp_path / "splits" / "cartwheel_test_split1.txt", ["c 1", "gone 2"])
    with pytest.raises(ConfigError, match=r"1 videos that --video_split=.* lists are not in .*cartwheel/gone"):
        data.load_video(f"video_folder:{tmp_path / 'hmdb'}", 2, split=str(tmp_path / "splits" / "*1.txt"))
    with pytest.raises(ConfigError, match="must contain train/ and val/"):
        data.load_video(f"video_folder:{tmp_path / 'hmdb'}", 2)


def test_ucf101_from_tfds_mock_data():
    import tensorflow_datasets as tfds

    from sskt_tf import data

    with tfds.testing.mock_data(num_examples=6):
        assert data.is_video_dataset("ucf101/ucf101_1") and not data.is_video_dataset("cifar10")
        loaded = data.load_video("ucf101/ucf101_1", batch_size=3, clip_length=8, image_size=16, short_side=20, seed=0)
        clips, labels = next(iter(loaded.train))
    assert clips.shape == (3, 8, 16, 16, 3) and loaded.num_classes == 101 and labels.dtype == tf.int64


def test_video_accuracy_averages_each_videos_clip_softmax():
    from sskt_tf.training.metrics import video_accuracy

    # Video 0 (label 0): clip softmaxes favour 1, 0, 0 -> averaged: 0; clips right: 2 of 3.
    # Video 1 (label 1): one clip, strongly 0 -> wrong, its clip wrong too.
    logits = {
        0: np.array([[0.0, 1.0], [3.0, 0.0], [2.0, 0.0]]),
        1: np.array([[5.0, 0.0]]),
    }
    videos = [(np.full((3, 1), 0.0), 0), (np.full((1, 1), 1.0), 1)]
    scores = video_accuracy(lambda clips: logits[int(clips[0, 0])], videos)
    assert scores == {"video_accuracy": 0.5, "all_clips_accuracy": 0.5, "videos": 2, "clips": 4}
    # Softmax averaging, not vote counting: two weak votes for 1 lose to one strong vote for 0.
    weak = np.array([[0.0, 0.1], [0.0, 0.1], [4.0, 0.0]])
    assert video_accuracy(lambda clips: weak, [(np.zeros((3, 1)), 0)])["video_accuracy"] == 1.0


def test_encoded_frames_give_the_same_clips_decoding_only_the_clip():
    from sskt_tf.data.video_pipeline import frame_loader

    video = np.random.default_rng(0).integers(0, 255, (30, 12, 16, 3), dtype=np.uint8)
    encoded = tf.stack([tf.io.encode_png(frame) for frame in video])  # as tfds stores ucf101 (lossless here)
    decoded_frames = []

    def counting_loader(frames):
        decoded_frames.append(int(tf.shape(frames)[0]))
        return frame_loader(0)(frames)

    seed = tf.constant([4, 2])
    np.testing.assert_array_equal(
        clips.training_clip(encoded, 16, 8, seed, load=counting_loader), clips.training_clip(video, 16, 8, seed)
    )
    assert decoded_frames == [16]  # the clip's frames, not the video's 30
    np.testing.assert_array_equal(
        clips.validation_clip(encoded, 16, 8, load=frame_loader(0)), clips.validation_clip(video, 16, 8)
    )
    every = clips.every_clip(encoded, 16, 8, load=frame_loader(0))
    np.testing.assert_array_equal(every, clips.every_clip(video, 16, 8))
    assert frame_loader(6)(encoded[:2]).shape == (2, 6, 8, 3)  # short side 12 -> 6


def test_frame_folders_decode_only_clip_frames_and_skip_a_clip_with_a_corrupt_frame(tmp_path, caplog):
    from helpers.moving_digits import DIRECTIONS, moving_digits
    from helpers.video_files import write_video_folder

    from sskt_tf import data

    train_x, train_y = moving_digits(9, frames=24, seed=0)
    paths = write_video_folder(str(tmp_path), train_x, train_y, DIRECTIONS, "train", kind="frames")
    val_x, val_y = moving_digits(2, frames=24, seed=1)
    write_video_folder(str(tmp_path), val_x, val_y, DIRECTIONS, "val", kind="frames")
    (tmp_path / "notes.txt").write_text("not a video")
    with open(f"{paths[0]}/image_00001.png", "wb") as f:  # the first frame of one training video
        f.write(b"corrupt")
    loaded = data.load_video(
        f"video_folder:{tmp_path}", batch_size=2, clip_length=8, image_size=16, short_side=0, seed=0
    )
    with caplog.at_level("WARNING"):
        train_batches = list(loaded.train) + list(loaded.train)  # two epochs: the corrupt frame is drawn at most
    assert all(clips.shape == (2, 8, 16, 16, 3) for clips, _ in train_batches)
    # Validation clips equal the clips of the fully decoded videos (same frames, same crop).
    val = np.concatenate([c for c, _ in loaded.val])
    order = np.argsort([DIRECTIONS[label] for label in val_y], kind="stable")  # classes in sorted order
    expected = np.stack([clips.validation_clip(val_x[i], 8, 16).numpy() for i in order])
    np.testing.assert_allclose(val, expected, atol=1e-3)
    # Test stacks: 24 frames make 3 clips of 8. A 24-frame training clip always holds the corrupt frame 1.
    stacks = [s for s, _ in loaded.video_test]
    assert [s.shape[0] for s in stacks] == [3, 3]
    corrupt = data.load_video(f"video_folder:{tmp_path}", batch_size=1, clip_length=24, image_size=16, seed=0)
    with caplog.at_level("WARNING"):
        assert len(list(corrupt.train)) == 8  # 9 videos, the corrupt one's only clip dropped
    assert any("unreadable frame" in r.message and "video000" in r.message for r in caplog.records)
