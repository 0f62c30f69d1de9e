"""The CPU digits study: its data splits and its tables (configs/study)."""

import os

import numpy as np
from helpers.processes import REPO
from helpers.train_flags import train_config
from studies import digits, harness

STUDY = os.path.join(REPO, "configs", "study")


def test_splits_keep_source_and_target_classes_apart_with_few_target_labels():
    labels = np.repeat(np.arange(10), 30)
    source_train, source_val = digits.split_indices(labels, digits.SOURCE_CLASSES)
    target_train, target_val = digits.split_indices(labels, digits.TARGET_CLASSES, train_per_class=4)
    assert (len(source_train), len(source_val)) == (5 * 24, 5 * 6)
    assert (len(target_train), len(target_val)) == (5 * 4, 5 * 26)
    assert set(labels[source_train]) | set(labels[source_val]) == {0, 1, 2, 3, 4}
    assert set(labels[target_train]) == {5, 6, 7, 8, 9}
    assert np.bincount(labels[target_train], minlength=10)[5:].tolist() == [4] * 5
    everything = np.concatenate([source_train, source_val, target_train, target_val])
    assert len(set(everything)) == len(labels)  # every image once


def test_study_cells_parse_as_train_flags_and_sskt_reads_the_source_run():
    source_table = harness.load_table(os.path.join(STUDY, "digits_source"))
    table = harness.load_table(os.path.join(STUDY, "digits"))
    (source_cell,) = harness.plan([source_table], output_dir="out")
    cells = harness.plan([table], output_dir="out")
    assert [cell.table.name for cell in cells[:1]] == ["digits_teachers"]  # KD's teacher first
    assert len(cells) == 1 + 5 * 5
    for cell in [source_cell, *cells]:
        config = train_config(cell.command[2:])
        assert config.image_size == 16 and config.dataset.startswith("folder:runs/digits_study/data/")
        if cell.row.name == "sskt":
            assert config.sources == [os.path.join(source_cell.model_dir, "best.keras")]
        if cell.row.name == "kd":
            assert config.teacher == os.path.join(cells[0].model_dir, "best.keras")
