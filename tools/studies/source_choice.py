"""Did the transferability scores predict SSKT's real gain? Scores of candidate sources against
the accuracy SSKT reached with each, over a study table's finished runs.

A spec (``configs/study/cifar10/source_choice.json``) names the candidates: each one's source
file and the table row that trained SSKT with it, the baseline row (scratch), the column and
seeds, and the flags of the target's training images. :func:`source_choice` scores every
candidate once (:func:`sskt_tf.training.source_ranking.rank`), reads each row's and the baseline's
``results.json`` seed by seed, and reports the gain (row minus baseline, same seed, mean over
seeds) with the Spearman rank correlation between each score and the gain.
"""

import json
import os

import numpy as np

from sskt_tf.errors import ConfigError
from sskt_tf.training import source_ranking
from sskt_tf.training.flags import config_from_args

SCORES = source_ranking.SCORES
SCORE_NAMES = {"leep": "LEEP", "nce": "NCE", "logme": "LogME"}


def spearman(x, y):
    """Spearman's rank correlation of two sequences (ties get their average rank).

    Returns:
        A float in [-1, 1], or NaN when either sequence is constant or shorter than 2.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(x), _ranks(y))[0, 1])


def _ranks(values):
    order = values.argsort()
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties: their average rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def seed_gains(output_dir, table, row, baseline, column, seeds, metric="best_val_accuracy"):
    """A row's gain over the baseline row, seed by seed, in points (x 100).

    Args:
        output_dir: the harness's ``--output_dir``.
        table: the table's name (its directory under ``output_dir``).
        row, baseline: row names.
        column: the column's slug.
        seeds: the seeds to compare; a seed missing in either row is left out.
        metric: the ``results.json`` value compared.

    Returns:
        ``{seed: gain}`` for the seeds both rows have finished.
    """
    gains = {}
    for seed in seeds:
        values = []
        for name in (row, baseline):
            path = os.path.join(output_dir, table, name, column, f"seed{seed}", "results.json")
            if os.path.exists(path):
                with open(path) as f:
                    values.append(json.load(f)[metric])
        if len(values) == 2:
            gains[seed] = 100 * (values[0] - values[1])
    return gains


def source_choice(spec_path, output_dir, rank_examples=0):
    """Scores the spec's candidates and compares the scores with the gains their rows measured.

    Args:
        spec_path: the spec's JSON file.
        output_dir: the harness's ``--output_dir`` (``{output_dir}`` in the spec stands for it).
        rank_examples: score on the first N training images; 0 = all.

    Returns:
        ``{"candidates": [{label, source, row, leep, nce, logme, gains, gain, seeds}],
        "spearman": {score: rho over the candidates with a measured gain}, ...}``.

    Raises:
        ConfigError: a spec or a source file that cannot be read.
    """
    with open(spec_path) as f:
        spec = json.load(f)
    candidates = spec["candidates"]
    sources = [c["source"].format(output_dir=output_dir) for c in candidates]
    missing = [s for s in sources if not os.path.exists(s)]
    if missing:
        raise ConfigError(f"Candidate sources not found (train them with tools/reproduce.py first): {missing}")
    config = config_from_args([*spec["rank_flags"], f"--sources={','.join(sources)}", "--soft_label_cache="])
    ranking = source_ranking.rank(config, rank_examples=rank_examples, pairs=False)
    by_source = {row["sources"][0]: row for row in ranking["rows"]}
    rows = []
    for candidate, source in zip(candidates, sources):
        scores = by_source.get(source) or by_source[os.path.splitext(os.path.basename(source))[0]]
        gains = seed_gains(
            output_dir, spec["table"], candidate["row"], spec["baseline_row"], spec["column"], spec["seeds"]
        )
        rows.append(
            {
                "label": candidate["label"],
                "source": source,
                "row": candidate["row"],
                **{score: scores[score] for score in SCORES},
                "gains": gains,
                "gain": float(np.mean(list(gains.values()))) if gains else None,
                "seeds": sorted(gains),
            }
        )
    measured = [row for row in rows if row["gain"] is not None]
    return {
        "examples": ranking["examples"],
        "baseline_row": spec["baseline_row"],
        "candidates": rows,
        "spearman": {score: spearman([r[score] for r in measured], [r["gain"] for r in measured]) for score in SCORES},
        "measured_candidates": len(measured),
    }


def format_markdown(result):
    """The comparison as a Markdown table plus the rank correlations."""
    lines = [
        "| candidate source | LEEP | NCE | LogME | SSKT gain over scratch (points, seeds) |",
        "|---|---|---|---|---|",
    ]
    for row in result["candidates"]:
        gain = "–" if row["gain"] is None else f"{row['gain']:+.2f} ({', '.join(map(str, row['seeds']))})"
        lines.append(f"| {row['label']} | {row['leep']:.4f} | {row['nce']:.4f} | {row['logme']:.4f} | {gain} |")
    rho = ", ".join(
        f"{score.upper() if score != 'logme' else 'LogME'} {value:+.2f}" for score, value in result["spearman"].items()
    )
    lines += ["", f"Spearman rank correlation with the gain over {result['measured_candidates']} candidates: {rho}."]
    return "\n".join(lines)


def plot(result, output_path):
    """One panel per score: each candidate's score against its gain, with Spearman's rho.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in result["candidates"] if row["gain"] is not None]
    figure, axes = plt.subplots(1, len(SCORES), figsize=(4 * len(SCORES), 3.6))
    for axis, score in zip(axes, SCORES):
        for row in measured:
            spread = np.std(list(row["gains"].values()), ddof=1) if len(row["gains"]) > 1 else 0.0
            axis.errorbar(row[score], row["gain"], yerr=spread, fmt="o", capsize=3, label=row["label"])
        axis.axhline(0.0, color="grey", lw=0.8)
        axis.set_xlabel(SCORE_NAMES[score])
        axis.set_title(f"Spearman rho {result['spearman'][score]:+.2f}")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(f"SSKT accuracy gain over {result['baseline_row']} (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.12 + 0.04 * (len(labels) // 2), 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    figure.savefig(output_path, dpi=110)
    plt.close(figure)
    return figure
