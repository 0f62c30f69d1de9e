"""Evaluation beyond Keras' metrics: Pascal VOC 2007 per-class average precision and mAP; video accuracy.

Labels follow :func:`sskt_tf.data.load_tfds`'s multi-label encoding: 1 positive,
0 negative, -1 difficult. Difficult (image, class) pairs are ignored, as in
VOC's evaluation.
"""

import numpy as np

# VOC 2007 averages the interpolated precision at these recalls. Exact tenths
# (k / 10), so that a recall of exactly 0.3 counts at t = 0.3; a float step
# (np.arange(0, 1.1, 0.1) gives 0.30000000000000004) would miss it.
RECALL_THRESHOLDS = np.arange(11) / 10


def _as_columns(array):
    """``[N]`` or ``[N, C]`` -> ``[N, C]`` numpy array."""
    array = np.asarray(array)
    return array[:, None] if array.ndim == 1 else array


def _ranked_precision_recall(scores, positive, counted):
    """Precision and recall after each example, examples ranked by score per class.

    Args:
        scores: ``[N, C]`` scores.
        positive: ``[N, C]`` bool, counted positives.
        counted: ``[N, C]`` bool, pairs that are not ignored.

    Returns:
        ``(precision, recall)``, each ``[N, C]`` in descending score order.
        An ignored example adds no true or false positive, so its row repeats
        the previous precision and recall (0 before any counted example).
    """
    # A stable sort breaks ties by example order, as the devkit's sort does.
    order = np.argsort(-scores, axis=0, kind="stable")
    true_positives = np.cumsum(np.take_along_axis(positive, order, axis=0), axis=0)
    seen = np.cumsum(np.take_along_axis(counted, order, axis=0), axis=0)
    precision = true_positives / np.maximum(seen, 1)
    recall = true_positives / np.maximum(positive.sum(axis=0), 1)
    return precision, recall


def _eleven_point_average(precision, recall):
    """Mean over t in {0, 0.1, ..., 1} of the highest precision at recall >= t (0 if none).

    Recall never decreases down the ranking, so the rows with recall >= t are a
    suffix of it, starting at the number of rows with recall < t.
    """
    best_from = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    best_from = np.concatenate([best_from, np.zeros((1, precision.shape[1]))])  # the empty suffix: 0
    first_rows = (recall[None] < RECALL_THRESHOLDS[:, None, None]).sum(axis=1)  # [11, C]
    return np.take_along_axis(best_from, first_rows, axis=0).mean(axis=0)


def voc_average_precision(scores, labels, ignore=None):
    """Per-class average precision as the VOC 2007 devkit computes it for classification.

    Follows ``VOCevalcls.m``: rank the images by descending score; walking
    down the ranking, accumulate true positives (positive images) and false
    positives (negative images) and compute recall = TP / #positives and
    precision = TP / (TP + FP); ignored (difficult) images count as neither.
    AP is the 11-point interpolated average precision: the mean over
    t in {0, 0.1, ..., 1} of the maximum precision at recall >= t (0 if no
    rank reaches recall t). Ties in score keep the example order.

    Args:
        scores: ``[N, C]`` (or ``[N]`` for one class) scores; higher means
            more likely. Logits rank as their sigmoids do, without the ties of
            saturated float probabilities.
        labels: same shape: 1 (any value > 0) positive, 0 negative, -1 (any
            value < 0) difficult, i.e. ignored.
        ignore: optional bool array of that shape: more pairs to ignore.

    Returns:
        A float64 ``[C]`` array of APs (``[1]`` for 1-D input); NaN for a class
        without any (non-ignored) positive example.

    Raises:
        ValueError: if the shapes differ.
    """
    scores, labels = _as_columns(scores).astype(np.float64), _as_columns(labels)
    extra = np.zeros(labels.shape, bool) if ignore is None else _as_columns(ignore).astype(bool)
    if not scores.shape == labels.shape == extra.shape:
        raise ValueError(f"scores {scores.shape}, labels {labels.shape} and ignore {extra.shape} must have one shape.")
    counted = (labels >= 0) & ~extra
    positive = (labels > 0) & counted
    ap = _eleven_point_average(*_ranked_precision_recall(scores, positive, counted))
    return np.where(positive.any(axis=0), ap, np.nan)


def mean_average_precision(scores, labels, ignore=None):
    """VOC 2007 mean average precision over classes.

    Classes without any (non-ignored) positive example have no AP (NaN) and
    are left out of the mean.

    Args:
        scores: ``[N, C]`` scores (see :func:`voc_average_precision`).
        labels: ``[N, C]`` labels: 1 positive, 0 negative, -1 ignored.
        ignore: optional ``[N, C]`` bool array of more pairs to ignore.

    Returns:
        ``(mAP, per-class APs)``: a float (NaN when no class has a positive)
        and the float64 ``[C]`` array of :func:`voc_average_precision`.
    """
    ap = voc_average_precision(scores, labels, ignore)
    defined = ap[~np.isnan(ap)]
    return (float(defined.mean()) if defined.size else float("nan")), ap


def video_accuracy(predict, videos):
    """Video accuracy: a video's class is the argmax of its clips' softmax, averaged.

    The paper's test metric for action recognition; the accuracy of every clip
    on its own comes with it.

    Args:
        predict: clips ``[n, T, H, W, 3]`` -> logits ``[n, classes]``.
        videos: ``(clips [n_clips, T, H, W, 3], int label)`` elements, one a
            video (:func:`sskt_tf.data.video_pipeline.video_clip_stacks`).

    Returns:
        ``{"video_accuracy", "all_clips_accuracy", "videos", "clips"}``
        (accuracies None when there is no video).
    """
    correct_videos = correct_clips = videos_seen = clips_seen = 0
    for clips, label in videos:
        logits = np.asarray(predict(clips), np.float64)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        label = int(label)
        correct_videos += int(np.argmax(probabilities.mean(axis=0)) == label)
        correct_clips += int(np.sum(np.argmax(probabilities, axis=1) == label))
        videos_seen += 1
        clips_seen += len(probabilities)
    return {
        "video_accuracy": correct_videos / videos_seen if videos_seen else None,
        "all_clips_accuracy": correct_clips / clips_seen if clips_seen else None,
        "videos": videos_seen,
        "clips": clips_seen,
    }
