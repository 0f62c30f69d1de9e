"""Candidate sources ranked by transferability scores of their outputs on the target's training
images: what ``tools/rank_sources.py`` prints. See :mod:`sskt_tf.sources.transferability` for the scores."""

import itertools

import numpy as np

from sskt_tf.errors import ConfigError
from sskt_tf.sources import transferability

SCORES = ("leep", "nce", "logme")


def softmax(logits):
    """Row-wise softmax of ``[n, classes]`` logits, computed stably."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def score_sources(outputs, pairs=True):
    """LEEP, NCE and LogME of every source, and of every pair of sources.

    Args:
        outputs: a :class:`sskt_tf.sources.outputs.SourceOutputs`.
        pairs: also score each pair of sources used together.

    Returns:
        A list of dicts (``sources``: the names, or the specs when two names are
        alike; ``specs``: the ``--sources`` entries; ``classes``, ``leep``, ``nce``,
        ``logme``, ``seconds``), singles first, in the order of ``outputs``. ``logme`` is
        None from a top-k cache: LogME regresses on every logit, and such a cache replaced
        all but K of them by a constant fill.
    """
    labels = outputs.labels

    def logme(logits):
        return None if outputs.top_k else transferability.logme(logits, labels)

    # Sources are named after their files; two candidates called best.keras go by their paths.
    names = outputs.names if len(set(outputs.names)) == len(outputs.names) else outputs.specs
    probabilities = [softmax(logits) for logits in outputs.logits]
    rows = [
        {
            "sources": [name],
            "specs": [spec],
            "classes": int(logits.shape[1]),
            "leep": transferability.leep(p, labels),
            "nce": transferability.nce(logits, labels),
            "logme": logme(logits),
            "seconds": round(seconds, 2),
        }
        for name, spec, logits, p, seconds in zip(names, outputs.specs, outputs.logits, probabilities, outputs.seconds)
    ]
    if pairs:
        for a, b in itertools.combinations(range(len(outputs.names)), 2):
            logits_a, logits_b = outputs.logits[a], outputs.logits[b]
            pair_classes = logits_a.argmax(axis=1) * logits_b.shape[1] + logits_b.argmax(axis=1)
            rows.append(
                {
                    "sources": [names[a], names[b]],
                    "specs": [outputs.specs[a], outputs.specs[b]],
                    "classes": int(logits_a.shape[1] * logits_b.shape[1]),
                    "leep": transferability.leep_of_pair(probabilities[a], probabilities[b], labels),
                    "nce": transferability.nce(pair_classes, labels),
                    "logme": logme(np.concatenate([logits_a, logits_b], axis=1)),
                    "seconds": round(outputs.seconds[a] + outputs.seconds[b], 2),
                }
            )
    return rows


def rank_outputs(outputs, rank_by="leep", pairs=True):
    """Scores candidate sources from their outputs; returns the table, best first.

    Args:
        outputs: the candidates' :class:`sskt_tf.sources.outputs.SourceOutputs`.
        rank_by: the score to sort by (``leep``, ``nce`` or ``logme``).
        pairs: also score every pair of candidates.

    Returns:
        ``{"examples": n, "classes": target classes, "rank_by": ..., "top_k": K (0 = every
        logit), "rows": [...]}`` with the rows of :func:`score_sources`, singles then pairs,
        each best first.

    Raises:
        ConfigError: an unknown score, LogME asked of top-k outputs, fewer than two classes.
    """
    check_rank_by(rank_by)
    if outputs.top_k and rank_by == "logme":
        raise ConfigError(
            f"--rank_by=logme needs every logit, but the cache keeps each source's top {outputs.top_k} only: "
            "rank by leep or nce, or drop --soft_label_cache to run the sources."
        )
    if len(set(outputs.labels.tolist())) < 2:
        raise ConfigError("The training images hold fewer than two classes: no source can be scored on them.")
    rows = score_sources(outputs, pairs)
    singles = sorted((r for r in rows if len(r["sources"]) == 1), key=lambda r: -r[rank_by])
    combined = sorted((r for r in rows if len(r["sources"]) == 2), key=lambda r: -r[rank_by])
    return {
        "examples": int(len(outputs.labels)),
        "classes": len(outputs.class_names),
        "rank_by": rank_by,
        "top_k": outputs.top_k,
        "rows": singles + combined,
    }


def check_rank_by(rank_by):
    """Raises a ConfigError unless ``rank_by`` names a score."""
    if rank_by not in SCORES:
        raise ConfigError(f"--rank_by={rank_by}: use one of {', '.join(SCORES)}.")


def format_table(ranking):
    """The ranking as a Markdown table.

    Args:
        ranking: what :func:`rank_outputs` returns.

    Returns:
        The text: a line on the images and classes, then one table row a candidate (or pair).
    """
    lines = [
        f"{ranking['examples']} training images, {ranking['classes']} target classes; sorted by {ranking['rank_by']}."
    ]
    if ranking.get("top_k"):
        lines.append(
            f"LogME left out (–): the cache keeps each source's top {ranking['top_k']} logits, and LogME needs "
            "them all (drop --soft_label_cache to run the sources)."
        )
    lines += [
        "",
        "| source | classes | LEEP | NCE | LogME | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in ranking["rows"]:
        lines.append(
            f"| {' + '.join(row['sources'])} | {row['classes']} | {row['leep']:.4f} | {row['nce']:.4f} | "
            f"{'–' if row['logme'] is None else format(row['logme'], '.4f')} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)
