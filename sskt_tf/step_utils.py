"""Pieces every training method's ``train_step``/``test_step`` shares."""

import tensorflow as tf
from keras import ops

from sskt_tf.errors import ConfigError


def num_replicas():
    """Replicas of the active ``tf.distribute`` strategy (1 outside any)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def l2_penalty(variables, weight_decay):
    """Per-replica coupled L2 term ``0.5 * wd * sum(w^2) / replicas``.

    Its gradient, summed over replicas, is ``wd * w``: exactly PyTorch's
    ``SGD(weight_decay=wd)``.

    Args:
        variables: the variables to decay.
        weight_decay: the coefficient ``wd``.

    Returns:
        A float32 scalar (0 without decay).
    """
    if not weight_decay or not variables:
        return 0.0
    squares = ops.sum(ops.stack([ops.sum(ops.square(ops.cast(v, "float32"))) for v in variables]))
    return 0.5 * weight_decay * squares / num_replicas()


def update_loss_trackers(tracked, batch_size):
    """Updates ``keras.metrics.Mean`` trackers with per-replica loss terms.

    Each value is a replica's share of a global-batch mean (see
    :mod:`sskt_tf.losses`), so it is multiplied back by the replica count and
    weighted by the local batch size: the trackers then report global means.

    Args:
        tracked: ``(tracker, per-replica value)`` pairs.
        batch_size: the replica's batch size.
    """
    unscale = float(num_replicas())
    for tracker, value in tracked:
        tracker.update_state(value * unscale, sample_weight=batch_size)


def results_without(model, trackers):
    """``model.get_metrics_result()`` without the given trackers' entries (terms a step did not compute)."""
    results = model.get_metrics_result()
    for tracker in trackers:
        results.pop(tracker.name, None)
    return results


def split_inputs(x):
    """``(images, soft labels or None)`` of a batch's inputs.

    Inputs are images, or ``{"images": ..., "soft_labels": (...)}`` when a
    soft-label cache provides the sources' logits.
    """
    if isinstance(x, dict):
        if "images" not in x:
            raise ConfigError(f"Dict inputs need an 'images' entry (and optionally 'soft_labels'), got {sorted(x)}.")
        soft_labels = x.get("soft_labels")
        return x["images"], None if soft_labels is None else list(soft_labels)
    return x, None


def skip_empty_batch(images, evaluate_batch, current_results):
    """Runs ``evaluate_batch()`` unless the batch is empty.

    Multi-worker evaluation can hand a worker an empty batch at the end of the
    data, and TensorFlow's oneDNN CPU convolutions return wrongly shaped results
    for empty batches; such a batch changes no metric, so it is skipped. (No
    collectives run in evaluation.)

    Args:
        images: the batch's images.
        evaluate_batch: function of no arguments updating and returning the metrics.
        current_results: function of no arguments returning the metrics unchanged.

    Returns:
        The metrics' results dict.
    """
    return tf.cond(tf.shape(images)[0] > 0, evaluate_batch, current_results)
