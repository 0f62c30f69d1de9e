"""Transferability scores: how well a source's outputs on the target's labelled images predict
the target's labels, from one forward pass and no training.

All three scores are "higher is better" and comparable between sources on the same target
images and labels (not between targets).

- :func:`leep` (Nguyen et al., ICML 2020) reads the source's softmax outputs ``theta``. It
  builds the empirical joint distribution of target label ``y`` and source class ``z``,
  ``P(y, z) = 1/n * sum_{i: y_i = y} theta_i[z]``, the conditional ``P(y | z) = P(y, z) / P(z)``,
  and scores the average log-likelihood of the "expected empirical predictor"
  ``p(y_i | x_i) = sum_z P(y_i | z) theta_i[z]``. It is at most 0.
- :func:`nce` (Tran et al., ICCV 2019) reads only the source's top-1 class ``z_i``: the
  negative conditional entropy ``-H(Y | Z)`` of the empirical joint of ``(y_i, z_i)``. It lies
  between ``-H(Y)`` (a source whose predictions say nothing: a constant one) and 0 (a source
  whose predictions determine the label).
- :func:`logme` (You et al., ICML 2021) reads features or logits ``f_i``: for each target
  class, the log marginal likelihood (evidence) per example of a Bayesian linear regression of
  the class's one-hot column on the features, with prior precision ``alpha`` on the weights and
  noise precision ``beta`` chosen to maximise the evidence, averaged over classes.
"""

import numpy as np

from sskt_tf.errors import ConfigError

_TINY = 1e-12


def _check(outputs, labels, name):
    outputs = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels)
    if outputs.ndim != 2 or labels.ndim != 1 or len(outputs) != len(labels):
        raise ConfigError(
            f"{name} needs a [n, classes or features] array of the source's outputs and n target labels; got shapes "
            f"{outputs.shape} and {labels.shape}."
        )
    if len(labels) == 0:
        raise ConfigError(f"{name} needs at least one labelled target example.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ConfigError(f"{name} needs target labels as class indices 0..K-1; got {labels.dtype} {labels[:5]}.")
    if not np.isfinite(outputs).all():
        raise ConfigError(f"{name}: the source's outputs hold NaN or infinite values.")
    return outputs, labels


def _one_hot(labels):
    classes = int(labels.max()) + 1
    return np.eye(classes)[labels]


def _check_probabilities(probabilities, labels, name):
    theta, labels = _check(probabilities, labels, name)
    if (theta < 0).any() or not np.allclose(theta.sum(axis=1), 1.0, atol=1e-3):
        raise ConfigError(
            f"{name} needs the source's softmax probabilities (non-negative rows that sum to 1), not logits."
        )
    return theta, labels


def leep(probabilities, labels):
    """LEEP of a source: the average log-likelihood of its expected empirical predictor.

    Args:
        probabilities: ``[n, Z]`` softmax outputs of the source on the n target images
            (rows sum to 1).
        labels: ``[n]`` target labels, class indices.

    Returns:
        A float <= 0; higher means the source's outputs predict the target labels better.

    Raises:
        ConfigError: shapes that do not match, labels that are not class indices, rows
            that are not probability distributions.
    """
    theta, labels = _check_probabilities(probabilities, labels, "LEEP")
    joint = _one_hot(labels).T @ theta / len(labels)  # [K, Z]: P(y, z)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), _TINY)  # P(y | z)
    likelihood = np.einsum("iz,iz->i", theta, conditional[labels])  # sum_z P(y_i | z) theta_i[z]
    return float(np.mean(np.log(np.maximum(likelihood, _TINY))))


def leep_of_pair(probabilities_a, probabilities_b, labels):
    """LEEP of two sources used together: of one source whose classes are their pairs of classes.

    The pair's output on an image is the product distribution ``theta_a[z1] * theta_b[z2]``
    over pairs ``(z1, z2)`` (the two sources' outputs, taken as independent given the
    image), so the score measures what the two outputs predict together: two sources
    that each separate other target classes score higher as a pair than either alone,
    which the average of their scores cannot show. The joint table has
    ``classes x Z1 x Z2`` entries (memory), built by one matrix product per target class
    (time ``n x Z1 x Z2``: seconds for two 1000-class sources over a few thousand images).

    Args:
        probabilities_a: ``[n, Z1]`` softmax outputs of the first source.
        probabilities_b: ``[n, Z2]`` softmax outputs of the second, on the same images.
        labels: ``[n]`` target labels.

    Returns:
        A float <= 0.

    Raises:
        ConfigError: as :func:`leep`, for either source.
    """
    theta_a, labels = _check_probabilities(probabilities_a, labels, "LEEP")
    theta_b, _ = _check_probabilities(probabilities_b, labels, "LEEP")
    classes = int(labels.max()) + 1
    rows_of = [labels == y for y in range(classes)]
    joint = np.stack([theta_a[rows].T @ theta_b[rows] for rows in rows_of]) / len(labels)  # P(y, z1, z2)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), _TINY)
    likelihood = np.empty(len(labels))
    for y, rows in enumerate(rows_of):
        likelihood[rows] = np.sum((theta_a[rows] @ conditional[y]) * theta_b[rows], axis=1)
    return float(np.mean(np.log(np.maximum(likelihood, _TINY))))


def nce(predictions, labels):
    """NCE of a source: ``-H(Y | Z)`` of the target labels given its top-1 classes.

    Args:
        predictions: ``[n]`` source class indices (top-1), or ``[n, Z]`` outputs whose
            argmax is taken.
        labels: ``[n]`` target labels, class indices.

    Returns:
        A float between ``-H(Y)`` (predictions independent of the labels) and 0.

    Raises:
        ConfigError: shapes that do not match, labels that are not class indices.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    _, labels = _check(predictions.reshape(-1, 1), labels, "NCE")
    sources = np.unique(predictions, return_inverse=True)[1]
    joint = np.zeros((int(labels.max()) + 1, int(sources.max()) + 1))
    np.add.at(joint, (labels, sources), 1.0)
    joint /= len(labels)
    marginal = joint.sum(axis=0, keepdims=True)
    present = joint > 0
    return float(np.sum(joint[present] * np.log(joint[present] / np.broadcast_to(marginal, joint.shape)[present])))


def _log_evidence(s, projected, target_norm2, n, dims, iterations=100, tolerance=1e-5):
    """Maximised per-example log evidence of a Bayesian linear regression, from the SVD of the features.

    Args:
        s: squared singular values of the features (the directions they span).
        projected: the target column projected on the matching left singular vectors (``U^T y``).
        target_norm2: ``||y||^2``.
        n: examples.
        dims: feature dimensions (directions beyond ``len(s)`` carry the prior alone).
        iterations, tolerance: the fixed-point iteration of ``alpha`` and ``beta`` stops after
            ``iterations`` steps or when both change by less than ``tolerance`` (relative).

    Returns:
        The log evidence at the maximising ``alpha`` and ``beta``, divided by ``n``.
    """
    if len(s) == 0:  # features that span nothing (all zero): the evidence of noise alone
        beta = n / max(target_norm2, _TINY)
        return 0.5 * (np.log(beta) - np.log(2 * np.pi) - 1.0)
    residual_outside = max(target_norm2 - float(np.sum(projected**2)), 0.0)  # the part of y no feature spans

    def fit(alpha, beta):
        """``||m||^2`` and ``||F m - y||^2`` of the posterior mean ``m`` at ``(alpha, beta)``."""
        weights_norm2 = float(np.sum(beta**2 * s * projected**2 / (alpha + beta * s) ** 2))
        residual = float(np.sum((projected * alpha / (alpha + beta * s)) ** 2)) + residual_outside
        return weights_norm2, residual

    alpha, beta = 1.0, 1.0
    for _ in range(iterations):
        gamma = float(np.sum(beta * s / (alpha + beta * s)))
        weights_norm2, residual = fit(alpha, beta)
        new_alpha = max(gamma / max(weights_norm2, _TINY), _TINY)
        new_beta = max((n - gamma) / max(residual, _TINY), _TINY)
        converged = abs(new_alpha - alpha) / alpha < tolerance and abs(new_beta - beta) / beta < tolerance
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    # log|A| for A = alpha I + beta F^T F, whose eigenvalues are alpha + beta s (and alpha
    # for the dims - len(s) directions that the n examples do not span).
    log_det = float(np.sum(np.log(alpha + beta * s))) + (dims - len(s)) * np.log(alpha)
    weights_norm2, residual = fit(alpha, beta)
    evidence = (
        n / 2 * np.log(beta)
        + dims / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * residual
        - alpha / 2 * weights_norm2
        - log_det / 2
    )
    return evidence / n


def logme(features, labels):
    """LogME of a source: the maximised log evidence of linear models from its features to the labels.

    Args:
        features: ``[n, D]`` features or logits of the source on the n target images.
        labels: ``[n]`` target labels, class indices.

    Returns:
        A float, the mean over target classes of the per-example log evidence; higher is
        better. Features that say nothing about the labels score near those that are the
        same for every image (which still fit each class's mean), possibly a little below:
        dimensions that explain nothing cost evidence.

    Raises:
        ConfigError: shapes that do not match, labels that are not class indices.
    """
    features, labels = _check(features, labels, "LogME")
    n, dims = features.shape
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    kept = singular > singular.max(initial=0.0) * 1e-10  # directions the features really span
    left, s = left[:, kept], singular[kept] ** 2
    targets = _one_hot(labels)
    scores = [
        _log_evidence(s, left.T @ targets[:, k], float(targets[:, k] @ targets[:, k]), n, dims)
        for k in range(targets.shape[1])
    ]
    return float(np.mean(scores))
