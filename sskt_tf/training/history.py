"""``history.csv``: one row per epoch, written as training goes and read by the tools.

Epochs are numbered from 1, as in ``best.json``, ``results.json``, the logs, Keras' progress
bar and TensorBoard. Files written before that (numbered from 0) are renumbered as they are read.
"""

import csv
import os

import keras


class HistoryLogger(keras.callbacks.Callback):
    """Writes one CSV row per epoch: ``epoch`` (1-based), then every log value by name.

    Unlike ``keras.callbacks.CSVLogger``, columns may first appear after the first
    epoch (validation every N epochs, ``val_mAP``): the file is rewritten with the
    wider header, and a row without a value (an epoch that did not validate) has
    an empty cell. Each write replaces the file atomically, so a kill never leaves
    half a row. Rows already in the file (a resumed run) are kept.

    Args:
        path: the CSV file (``history.csv``).
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": str(epoch + 1), **{key: repr(float(value)) for key, value in (logs or {}).items()}}
        write_history(self.path, read_history(self.path) + [row])


def read_history(path):
    """The rows of a ``history.csv`` file as dicts of strings (empty if there is no file).

    A cell without a value (e.g. ``val_*`` of an epoch that did not validate) is ``""``.
    Epochs are 1-based; a file numbered from 0 (written by an earlier version) is renumbered.
    """
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = [{key: value or "" for key, value in row.items()} for row in csv.DictReader(f)]
    if rows and rows[0].get("epoch") == "0":
        for row in rows:
            row["epoch"] = str(int(row["epoch"]) + 1)
    return rows


def write_history(path, rows):
    """Writes ``rows`` (dicts) as ``history.csv``: ``epoch`` first, the other columns sorted, empty cells for gaps."""
    columns = ["epoch"] + sorted(set().union(*rows) - {"epoch"})
    partial = f"{path}.partial"
    with open(partial, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def history_values(row):
    """The numeric cells of a history row as floats (``epoch`` and empty cells left out)."""
    return {key: float(value) for key, value in row.items() if key != "epoch" and value != ""}


def truncate_history(path, epochs):
    """Keeps the rows of the first ``epochs`` epochs of a ``history.csv`` file.

    Args:
        path: ``history.csv``.
        epochs: rows with ``epoch > epochs`` are removed; 0 removes the file.
    """
    rows = read_history(path)
    kept = [row for row in rows if int(row["epoch"]) <= epochs]
    if len(kept) == len(rows):
        return
    if not kept:
        os.remove(path)
        return
    write_history(path, kept)
