"""The official train/test split lists of UCF101 and HMDB51.

* UCF101 (``ucfTrainTestlist/``): ``trainlist0N.txt`` lines
  ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`` (video, 1-based class id) and
  ``testlist0N.txt`` beside it, lines ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi``.
* HMDB51 (``testTrainMulti_7030_splits/``): one file per class and split,
  ``<class>_test_split<N>.txt``, lines ``<video file> <id>`` with id 1 = train,
  2 = test, 0 = unused.

Pass ``--video_split`` the UCF101 train list, or a glob of the HMDB51 files of
one split (``.../testTrainMulti_7030_splits/*_test_split1.txt``).
"""

import glob
import os
import re

from sskt_tf.errors import ConfigError

_HMDB_FILE = re.compile(r"^(?P<name>.+)_test_split(?P<split>\d+)\.txt$")
HMDB_TRAIN, HMDB_TEST = "1", "2"


def _lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as error:
        raise ConfigError(f"Could not read the split file {path!r}: {error.strerror or error}.") from error


def _ucf101(train_list):
    """``(train, test)`` lists of ``class/video`` paths from a UCF101 train list and the test list beside it."""
    directory, name = os.path.split(train_list)
    test_list = os.path.join(directory, name.replace("trainlist", "testlist"))
    if not os.path.isfile(test_list):
        raise ConfigError(
            f"UCF101 split {train_list!r} needs its test list {test_list!r} beside it (both are in ucfTrainTestlist/)."
        )
    splits = []
    for path in (train_list, test_list):
        entries = []
        for number, line in enumerate(_lines(path), start=1):
            video = line.split()[0]
            if "/" not in video:
                raise ConfigError(f"{path}:{number}: expected 'Class/video.avi [id]', got {line!r}.")
            entries.append(video)
        splits.append(entries)
    return tuple(splits)


def _hmdb51(pattern):
    """``(train, test)`` lists of ``class/video`` paths from the HMDB51 split files matching ``pattern``."""
    files = sorted(glob.glob(os.path.expanduser(pattern)))
    if not files:
        raise ConfigError(
            f"No HMDB51 split files match {pattern!r}; pass e.g. testTrainMulti_7030_splits/*_test_split1.txt."
        )
    train, test = [], []
    splits = set()
    for path in files:
        match = _HMDB_FILE.match(os.path.basename(path))
        if not match:
            raise ConfigError(f"{path!r} is not an HMDB51 split file (<class>_test_split<N>.txt).")
        splits.add(match["split"])
        for number, line in enumerate(_lines(path), start=1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", HMDB_TRAIN, HMDB_TEST):
                raise ConfigError(f"{path}:{number}: expected '<video file> <0|1|2>', got {line!r}.")
            entry = f"{match['name']}/{parts[0]}"
            if parts[1] == HMDB_TRAIN:
                train.append(entry)
            elif parts[1] == HMDB_TEST:
                test.append(entry)
    if len(splits) > 1:
        raise ConfigError(f"{pattern!r} matches files of several splits ({sorted(splits)}); choose one split.")
    return train, test


def read_split(split):
    """The training and test videos an official split list names.

    Args:
        split: a UCF101 ``trainlist0N.txt`` or a glob of HMDB51
            ``<class>_test_split<N>.txt`` files.

    Returns:
        ``(train, test)``: lists of ``class/video file`` paths, relative to
        the video folder.
    """
    split = os.path.expanduser(split)
    if os.path.basename(split).startswith("trainlist"):
        if not os.path.isfile(split):
            raise ConfigError(f"Split file {split!r} does not exist.")
        return _ucf101(split)
    if any(char in split for char in "*?[") or _HMDB_FILE.match(os.path.basename(split)):
        return _hmdb51(split)
    raise ConfigError(
        f"--video_split={split}: pass a UCF101 trainlist0N.txt or a glob of HMDB51 split files "
        "(.../testTrainMulti_7030_splits/*_test_split1.txt)."
    )
