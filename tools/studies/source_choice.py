"""Did the transferability scores predict SSKT's real gain? Scores of candidate sources against
the accuracy SSKT reached with each, over a study table's finished runs.

A spec (``configs/study/cifar10/source_choice.json``) names the candidates: each one's source
file and the table row that trained SSKT with it, the baseline row (scratch), the column and
seeds, and the flags of the target's training images. :func:`source_choice` scores every
candidate once (:func:`sskt_tf.training.run_sources.rank`), reads each row's and the baseline's
``results.json`` seed by seed, and reports the gain (row minus baseline, same seed, mean over
seeds) with the Spearman rank correlation between each score and the gain (over the candidates
finished at every seed: :func:`split_by_seeds`), and two
permutation tests that say how much a handful of candidates and seeds can show: whether each
rho could come from scores that know nothing (:func:`spearman_p`), and whether the candidates'
gains differ beyond seed noise at all (:func:`candidates_differ_p`).
"""

import itertools
import json
import os

import numpy as np

from sskt_tf.errors import ConfigError
from sskt_tf.sources import ranking
from sskt_tf.training import run_sources
from sskt_tf.training.flags import config_from_args

SCORES = ranking.SCORES
SCORE_NAMES = {"leep": "LEEP", "nce": "NCE", "logme": "LogME"}


def spearman(x, y):
    """Spearman's rank correlation of two sequences (ties get their average rank).

    Args:
        x, y: sequences of numbers of the same length.

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


def spearman_p(x, y, draws=20000):
    """One-sided permutation p-value of Spearman's rho: how often scores that know nothing
    about the gains (a random order of ``y``) correlate with them at least as well.

    Exact over all orders for up to 8 values (with 4 candidates the smallest possible p is
    1/24 = 0.042); otherwise from ``draws`` random orders (seeded, so the answer is repeatable),
    counting the observed order among them so that p is never 0.

    Args:
        x: the scores.
        y: the gains, in the same order.
        draws: random orders drawn for more than 8 values.

    Returns:
        A float in (0, 1], or NaN where rho is NaN.
    """
    observed = spearman(x, y)
    if np.isnan(observed):
        return float("nan")
    y = np.asarray(y, float)
    if len(y) <= 8:
        orders = (list(order) for order in itertools.permutations(range(len(y))))
        rhos = np.array([spearman(x, y[order]) for order in orders])
        return float(np.mean(rhos >= observed - 1e-12))
    rng = np.random.default_rng(0)
    rhos = np.array([spearman(x, y[rng.permutation(len(y))]) for _ in range(draws)])
    return float((np.sum(rhos >= observed - 1e-12) + 1) / (draws + 1))


def candidates_differ_p(gains_by_candidate, draws=20000):
    """Permutation p-value that the candidates' mean gains differ only by seed noise.

    The candidates' runs at one seed share that seed's scratch run and data order, so the test
    permutes the candidates' gains within each seed (a randomised block design) and compares the
    spread of the candidates' mean gains (their variance) with the spread under those
    permutations. Only the seeds every candidate finished are used.

    Args:
        gains_by_candidate: one ``{seed: gain}`` per candidate.
        draws: random within-seed permutations (seeded, so the answer is repeatable).

    Returns:
        A float in (0, 1]: small when the candidates really differ; NaN with fewer than two
        candidates or seeds in common.
    """
    seeds = sorted(set.intersection(*(set(gains) for gains in gains_by_candidate))) if gains_by_candidate else []
    if len(gains_by_candidate) < 2 or len(seeds) < 2:
        return float("nan")
    table = np.array([[gains[seed] for gains in gains_by_candidate] for seed in seeds])  # seeds x candidates
    observed = table.mean(axis=0).var()
    rng = np.random.default_rng(0)
    spreads = np.array([rng.permuted(table, axis=1).mean(axis=0).var() for _ in range(draws)])
    return float((np.sum(spreads >= observed - 1e-12) + 1) / (draws + 1))


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


def source_choice(spec_path, output_dir, rank_examples=0, previous=None):
    """Scores the spec's candidates and compares the scores with the gains their rows measured.

    Args:
        spec_path: the spec's JSON file.
        output_dir: the harness's ``--output_dir`` (``{output_dir}`` in the spec stands for it).
        rank_examples: score on the first N training images; 0 = all.
        previous: the result of an earlier call with the same candidates, whose scores are
            reused instead of scoring again (the scores depend on the sources and the labelled
            images only: refresh the gains as seeds finish, even where a candidate's soft-label
            cache is gone); ``rank_examples`` is then ignored.

    Returns:
        ``{"candidates": [{label, source, row, leep, nce, logme, seconds, gains, gain, seeds}],
        "spearman": {score: rho over the candidates finished at every seed}, ...,
        "partial_candidates": [labels of those finished at some seeds only]}``.

    Raises:
        ConfigError: a spec or a source file that cannot be read, or a candidate that
            ``previous`` did not score.
    """
    with open(spec_path) as f:
        spec = json.load(f)
    candidates = spec["candidates"]
    sources = [c["source"].format(output_dir=output_dir) for c in candidates]
    if previous is None:
        missing = [s for s in sources if s.endswith(".keras") and not os.path.exists(s)]
        if missing:
            raise ConfigError(f"Candidate sources not found (train them with tools/reproduce.py first): {missing}")
    rows, examples = [], None
    for candidate, source in zip(candidates, sources):
        if previous is None:
            examples, scores = _score(spec, candidate, source, output_dir, rank_examples)
        else:
            examples, scores = previous["examples"], _previous_scores(previous, candidate, source)
        gains = seed_gains(
            output_dir, spec["table"], candidate["row"], spec["baseline_row"], spec["column"], spec["seeds"]
        )
        rows.append(
            {
                "label": candidate["label"],
                "source": source,
                "row": candidate["row"],
                **{score: scores[score] for score in SCORES},
                "seconds": scores["seconds"],
                "gains": gains,
                "gain": float(np.mean(list(gains.values()))) if gains else None,
                "seeds": sorted(gains),
            }
        )
    measured, partial = split_by_seeds(rows, spec["seeds"])
    gains = [r["gain"] for r in measured]
    return {
        "examples": examples,
        "baseline_row": spec["baseline_row"],
        "seeds": list(spec["seeds"]),
        "candidates": rows,
        "spearman": {score: spearman([r[score] for r in measured], gains) for score in SCORES},
        "spearman_p": {score: spearman_p([r[score] for r in measured], gains) for score in SCORES},
        "candidates_differ_p": candidates_differ_p([r["gains"] for r in measured]),
        "measured_candidates": len(measured),
        "partial_candidates": [r["label"] for r in partial],
    }


def _score(spec, candidate, source, output_dir, rank_examples):
    """``(examples, scores)`` of one candidate, scored alone with its own flags (weights, a cache
    whose first view it is scored on)."""
    flags = [flag.format(output_dir=output_dir) for flag in candidate.get("flags", ())]
    config = config_from_args([*spec["rank_flags"], "--soft_label_cache=", f"--sources={source}", *flags])
    ranking_of_one = run_sources.rank(config, rank_examples=rank_examples, pairs=False)
    (scores,) = ranking_of_one["rows"]
    return ranking_of_one["examples"], scores


def _previous_scores(previous, candidate, source):
    """One candidate's scores from an earlier result: the row with its label, source and row."""
    for row in previous["candidates"]:
        if (row["label"], row["source"], row["row"]) == (candidate["label"], source, candidate["row"]):
            return {name: row[name] for name in (*SCORES, "seconds")}
    raise ConfigError(
        f"The earlier result has no scores for the candidate {candidate['label']!r} (source {source}, row "
        f"{candidate['row']}): score again without --reuse_scores."
    )


def split_by_seeds(rows, seeds):
    """The candidates whose gains cover every seed, and those with only some of them.

    A mean over fewer seeds is not comparable with the others' (each seed moves every row's
    gain alike: its scratch run, its data order), so only candidates finished at every seed
    enter the correlations and the permutation tests; the others are shown, marked partial.

    Args:
        rows: the candidates' rows (``gains``: ``{seed: gain}``).
        seeds: the spec's seeds.

    Returns:
        ``(complete, partial)``: lists of rows; a row without any gain is in neither.
    """
    complete = [row for row in rows if row["gains"] and set(seeds) <= set(row["gains"])]
    partial = [row for row in rows if row["gains"] and row not in complete]
    return complete, partial


def _seed_list(seeds):
    """``"0, 1, 2"`` for seeds ``[0, 1, 2]``."""
    return ", ".join(map(str, seeds))


def _p_value(p):
    """A p-value to two decimals, or to one significant digit below 0.01 (never printed as 0.00)."""
    return f"{p:.1g}" if p < 0.01 else f"{p:.2f}"


def format_markdown(result):
    """The comparison as Markdown.

    Args:
        result: what :func:`source_choice` returns.

    Returns:
        A table (one row a candidate: its scores and its gain over the seeds), then the rank
        correlations with their p-values, and whether the candidates' gains differ at all.
    """
    lines = [
        "| candidate source | LEEP | NCE | LogME | seconds to score | SSKT gain over scratch (points, seeds) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["candidates"]:
        gain = "–" if row["gain"] is None else f"{row['gain']:+.2f} ({_seed_list(row['seeds'])})"
        if row["label"] in result["partial_candidates"]:
            gain += " partial: not in the statistics below"
        lines.append(
            f"| {row['label']} | {row['leep']:.4f} | {row['nce']:.4f} | {row['logme']:.4f} | {row['seconds']:.1f} | "
            f"{gain} |"
        )
    rho = ", ".join(
        f"{SCORE_NAMES[score]} {value:+.2f} (p = {_p_value(result['spearman_p'][score])})"
        for score, value in result["spearman"].items()
    )
    lines += [
        "",
        f"Spearman rank correlation with the gain over the {result['measured_candidates']} candidates finished "
        f"at every seed ({_seed_list(result['seeds'])}): {rho}; p is the one-sided permutation "
        "p-value (how often a random order of the candidates correlates at least as well).",
        "",
        "Do the candidates' gains differ beyond seed noise? Permutation p-value (gains permuted among the "
        f"candidates within each seed): {_p_value(result['candidates_differ_p'])}.",
    ]
    return "\n".join(lines)


def plot(result, output_path):
    """One panel per score: each candidate's score against its gain (mean and standard deviation
    over seeds, with each seed's gain as a faint dot; hollow where only some seeds have
    finished), titled with Spearman's rho over the finished candidates.

    Returns:
        The matplotlib ``Figure``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in result["candidates"] if row["gain"] is not None]
    figure, axes = plt.subplots(1, len(SCORES), figsize=(4 * len(SCORES), 3.6))
    for axis, score in zip(axes, SCORES):
        for index, row in enumerate(measured):
            seed_values = list(row["gains"].values())
            spread = np.std(seed_values, ddof=1) if len(seed_values) > 1 else 0.0
            color = f"C{index}"
            partial = row["label"] in result["partial_candidates"]
            label = f"{row['label']} (partial: seeds {_seed_list(row['seeds'])})" if partial else row["label"]
            axis.errorbar(
                row[score],
                row["gain"],
                yerr=spread,
                fmt="o",
                capsize=3,
                color=color,
                mfc="none" if partial else color,
                label=label,
            )
            axis.scatter([row[score]] * len(seed_values), seed_values, s=12, color=color, alpha=0.4)
        axis.axhline(0.0, color="grey", lw=0.8)
        axis.set_xlabel(SCORE_NAMES[score])
        axis.set_title(f"Spearman rho {result['spearman'][score]:+.2f} (p = {_p_value(result['spearman_p'][score])})")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel(f"gain over {result['baseline_row']} (points)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.12 + 0.04 * (len(labels) // 2), 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    figure.savefig(output_path, dpi=110)
    plt.close(figure)
    return figure
