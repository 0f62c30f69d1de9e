"""Learning curves of training runs: mean and spread over seeds, from each run's ``history.csv``.

``tools/plot_runs.py`` and ``tools/reproduce.py --plot`` draw them: one panel each
for the training loss (the target's), the training accuracy, the validation accuracy (or
mAP) and the learning rate, one line per group of runs (a table row: the same method over several seeds) with a
± one standard deviation band. Validation cells left empty by ``--validation_freq``
are skipped, so validation curves join the epochs that validated.

Plotting needs matplotlib (``pip install -e ".[plot]"``); reading and averaging do not.
"""

import glob
import math
import os
import re
import textwrap

import numpy as np

from sskt_tf.errors import ConfigError
from sskt_tf.training.history import read_history

# Panels: (title, candidate columns, the first present in the histories is drawn). The
# training loss panel prefers the target's own loss: the total also holds each method's
# auxiliary terms and the L2 penalty, which differ between methods.
PANELS = (
    ("Training loss", ("target_loss", "loss")),
    ("Training accuracy", ("accuracy",)),
    ("Validation", ("val_mAP", "val_accuracy")),
    ("Learning rate", ("learning_rate",)),
    # SSKT's diagnostics (columns load_history derives): has each head learned its source?
    ("Auxiliary loss above its floor", ("aux_above_floor",)),
    ("Heads' top-1 agreement with their sources", ("val_aux_agreement", "aux_agreement")),
)
_PERCENT_COLUMNS = ("accuracy", "val_accuracy", "val_mAP", "aux_agreement", "val_aux_agreement")
_AUX_COLUMN = re.compile(r"^(val_)?aux_(.+)_(loss|floor|agreement)$")


def load_history(run_dir):
    """A run's ``history.csv`` as ``{column: float array}``, one entry per epoch (NaN where empty).

    Args:
        run_dir: a training run's ``--model_dir``.

    Returns:
        A dict with ``epoch`` (1-based) and every other column.

    Raises:
        ConfigError: the run has no ``history.csv`` or it holds no epoch.
    """
    rows = read_history(os.path.join(run_dir, "history.csv"))
    if not rows:
        raise ConfigError(f"{run_dir} has no history.csv with an epoch in it: is it a training run's --model_dir?")
    columns = sorted(set().union(*rows))
    history = {name: np.array([float(row[name]) if row.get(name) else np.nan for row in rows]) for name in columns}
    history.update(_diagnostics(history))
    return history


def _diagnostics(history):
    """SSKT's per-source diagnostics averaged over sources: ``aux_above_floor`` (training loss minus
    its floor) and ``aux_agreement``/``val_aux_agreement``; absent for runs without them."""
    by_source = {}
    for name in history:
        match = _AUX_COLUMN.match(name)
        if match:
            by_source.setdefault((match[1] or "", match[2]), {})[match[3]] = history[name]
    derived = {}
    above = [c["loss"] - c["floor"] for (split, _), c in by_source.items() if not split and {"loss", "floor"} <= set(c)]
    if above:
        derived["aux_above_floor"] = np.mean(above, axis=0)
    for split in ("", "val_"):
        agreement = [c["agreement"] for (s, _), c in by_source.items() if s == split and "agreement" in c]
        if agreement:
            derived[f"{split}aux_agreement"] = np.mean(agreement, axis=0)
    return derived


def groups_from_patterns(patterns, finished_only=False):
    """``{label: [run directories]}`` from ``LABEL=GLOB`` strings (a bare ``GLOB`` is its own label).

    Args:
        patterns: strings such as ``"SSKT=runs/sskt/seed*"``; the same label twice adds to one group.
        finished_only: keep only runs that finished (their ``results.json`` is written
            last), leaving out runs still training or interrupted.

    Returns:
        The groups, in the order their labels first appear; run directories sorted.

    Raises:
        ConfigError: a pattern that matches no directory holding a ``history.csv``
            (and, with ``finished_only``, a ``results.json``).
    """
    needed = ("history.csv", "results.json") if finished_only else ("history.csv",)
    groups = {}
    for pattern in patterns:
        label, path_glob = pattern.split("=", 1) if "=" in pattern else (pattern, pattern)
        runs = sorted(
            path
            for path in glob.glob(os.path.expanduser(path_glob))
            if all(os.path.isfile(os.path.join(path, name)) for name in needed)
        )
        if not runs:
            raise ConfigError(f"{pattern}: no run directory with {' and '.join(needed)} matches {path_glob!r}.")
        groups.setdefault(label, []).extend(runs)
    return groups


def aggregate(histories, column):
    """Mean and sample standard deviation of ``column`` over runs, epoch by epoch.

    Args:
        histories: :func:`load_history` dicts (runs of different lengths allowed).
        column: the column to average.

    Returns:
        ``(epochs, mean, std, count)`` arrays over the epochs where at least one run
        has a value; ``std`` is 0 where only one run has one.
    """
    values = {}
    for history in histories:
        if column not in history:
            continue
        for epoch, value in zip(history["epoch"], history[column]):
            if np.isfinite(value):
                values.setdefault(int(epoch), []).append(value)
    epochs = np.array(sorted(values), dtype=int)
    mean = np.array([np.mean(values[e]) for e in epochs])
    std = np.array([np.std(values[e], ddof=1) if len(values[e]) > 1 else 0.0 for e in epochs])
    count = np.array([len(values[e]) for e in epochs], dtype=int)
    return epochs, mean, std, count


def _panel_column(candidates, histories):
    return next((name for name in candidates if any(name in h for h in histories)), None)


# The longest legend label (fontsize 8) that two columns fit in the 11-inch-wide figure.
_LEGEND_TWO_COLUMN_CHARACTERS = 75


def plot_groups(groups, output_path, title=None):
    """Draws the learning curves of groups of runs and writes them as an image.

    Args:
        groups: ``{label: [run directories]}``, in legend order; each group
            is drawn as its mean over runs with a ± std band.
        output_path: the image to write (``.png``, ``.svg``, ``.pdf``).
        title: the figure's title.

    Returns:
        The matplotlib ``Figure`` (one axis per panel of :data:`PANELS` that
        some run has, two panels a row, each with one labelled mean line per
        group; accuracies in percent).

    Raises:
        ConfigError: no groups, a run without history, or matplotlib missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ConfigError('Plotting needs matplotlib: pip install -e ".[plot]"') from error
    if not groups or not all(groups.values()):
        raise ConfigError(f"Nothing to plot: every group needs at least one run directory, got {groups}.")
    loaded = {label: [load_history(run_dir) for run_dir in run_dirs] for label, run_dirs in groups.items()}
    everything = [h for histories in loaded.values() for h in histories]
    panels = [(name, _panel_column(candidates, everything)) for name, candidates in PANELS]
    panels = [(name, column) for name, column in panels if column]
    rows = (len(panels) + 1) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(11, 3.8 * rows + (0.4 if title else 0)), squeeze=False)
    for axis in axes.ravel()[len(panels) :]:
        axis.set_visible(False)
    # One colour a group in every panel (a panel that lacks a group must not shift the others'),
    # all distinct for up to 20 groups.
    palette = plt.get_cmap("tab10" if len(loaded) <= 10 else "tab20").colors
    colors = {label: palette[index % len(palette)] for index, label in enumerate(loaded)}
    for axis, (name, column) in zip(axes.ravel(), panels):
        scale = 100.0 if column in _PERCENT_COLUMNS else 1.0
        for label, histories in loaded.items():
            epochs, mean, std, _ = aggregate(histories, column)
            if not len(epochs):
                continue
            runs = len(histories)
            (line,) = axis.plot(
                epochs,
                mean * scale,
                label=f"{label} (n={runs})",
                color=colors[label],
                linewidth=1.4,
                marker="." if len(epochs) < 40 else None,
            )
            axis.fill_between(
                epochs, (mean - std) * scale, (mean + std) * scale, color=line.get_color(), alpha=0.2, linewidth=0
            )
        axis.set_title(f"{name} ({column}{' %' if scale != 1 else ''})")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if column == "learning_rate" or column == "loss":
            axis.set_yscale("log")
    # The legend goes below the panels, where it hides no curve.
    # From every panel: a group may lack a panel's column (MAXL has no target_loss).
    by_label = {}
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            by_label.setdefault(label, handle)
    order = {f"{label} (n=": position for position, label in enumerate(groups)}
    labels = sorted(by_label, key=lambda shown: next(p for prefix, p in order.items() if shown.startswith(prefix)))
    handles = [by_label[label] for label in labels]
    # Two columns when the labels fit the figure's width side by side, else one.
    columns = 2 if max(map(len, labels)) <= _LEGEND_TWO_COLUMN_CHARACTERS else 1
    legend_height = 0.2 * math.ceil(len(labels) / columns) + 0.1
    width, height = figure.get_size_inches()
    figure.set_size_inches(width, height + legend_height)
    figure.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    if title:
        figure.suptitle(textwrap.fill(title, 110), fontsize=10)
    figure.tight_layout(rect=(0, legend_height / (height + legend_height), 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    figure.savefig(output_path, dpi=110)
    plt.close(figure)
    return figure
