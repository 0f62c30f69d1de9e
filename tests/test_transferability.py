"""LEEP, NCE and LogME against hand-computed cases and their known properties."""

import itertools

import numpy as np
import pytest

from sskt_tf.errors import ConfigError
from sskt_tf.sources import transferability as scores


def test_leep_hand_computed():
    # P(y, z) = [[0.4, 0.1], [0.2, 0.3]]; P(y | z) = [[2/3, 1/4], [1/3, 3/4]]; both examples'
    # expected empirical predictor gives 0.8 * 2/3 + 0.2 * 1/4 = 0.4 * 1/3 + 0.6 * 3/4 = 7/12.
    theta = np.array([[0.8, 0.2], [0.4, 0.6]])
    assert scores.leep(theta, np.array([0, 1])) == pytest.approx(np.log(7 / 12))


def test_nce_hand_computed():
    # z = 0 always means y = 0; z = 1 means y = 0 once and y = 1 twice: H(Y | Z) = 0.6 * H(1/3, 2/3).
    entropy = -(1 / 3 * np.log(1 / 3) + 2 / 3 * np.log(2 / 3))
    assert scores.nce(np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1])) == pytest.approx(-0.6 * entropy)
    # Outputs instead of classes: their argmax.
    outputs = np.array([[3.0, 1.0], [2.0, 0.0], [0.0, 1.0], [0.5, 2.0], [-1.0, 0.0]])
    assert scores.nce(outputs, np.array([0, 0, 0, 1, 1])) == pytest.approx(-0.6 * entropy)


def _toy_target(n=60, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, classes, n)


def _label_entropy(labels):
    p = np.bincount(labels) / len(labels)
    return -float(np.sum(p[p > 0] * np.log(p[p > 0])))


def test_a_source_that_determines_the_label_scores_highest_and_a_constant_one_lowest():
    labels = _toy_target()
    rng = np.random.default_rng(1)
    # Source classes 0-5; target label = source class // 2, so the top-1 class determines it.
    determining = np.eye(6)[2 * labels + rng.integers(0, 2, len(labels))]
    noisy = 0.6 * determining + 0.4 * rng.dirichlet(np.ones(6), len(labels))
    constant = np.tile(rng.dirichlet(np.ones(6)), (len(labels), 1))
    unrelated = rng.dirichlet(np.ones(6), len(labels))
    for score in (scores.leep, scores.nce):
        best, good, bad, worst = (score(p, labels) for p in (determining, noisy, unrelated, constant))
        assert best == pytest.approx(0.0, abs=1e-9) and best >= good > bad >= worst, score.__name__
        assert worst == pytest.approx(-_label_entropy(labels)), score.__name__  # the minimum, -H(Y)
    # Top-1 classes alike, but LEEP also sees how sure the source is.
    assert scores.leep(determining, labels) > scores.leep(noisy, labels)
    # LogME has no "-H(Y)" floor: constant features still fit each class's mean (an
    # intercept), and unrelated ones can score a little below them (dimensions that explain
    # nothing cost evidence). Both stay far below features that carry the label.
    best, good = (scores.logme(np.log(np.maximum(p, 1e-3)), labels) for p in (determining, noisy))
    bad, worst = (scores.logme(np.log(p), labels) for p in (unrelated, constant))
    assert best > good > max(bad, worst) and abs(bad - worst) < 0.1 * (good - max(bad, worst))


def test_scores_do_not_depend_on_the_order_of_source_classes_or_features():
    labels = _toy_target(seed=2)
    rng = np.random.default_rng(3)
    theta = rng.dirichlet(np.ones(5) * 0.3, len(labels))
    theta[labels == 1, 2] += 1.0
    theta /= theta.sum(axis=1, keepdims=True)
    features = rng.normal(size=(len(labels), 4)) + np.eye(4)[labels] * 2.0
    for permutation in itertools.islice(itertools.permutations(range(5)), 1, 6):
        assert scores.leep(theta[:, permutation], labels) == pytest.approx(scores.leep(theta, labels))
        assert scores.nce(theta[:, permutation], labels) == pytest.approx(scores.nce(theta, labels))
        columns = [p for p in permutation if p < 4]
        assert scores.logme(features[:, columns], labels) == pytest.approx(scores.logme(features, labels))


def _features(kind):
    rng = np.random.default_rng(4)
    if kind == "fewer examples than features":
        labels = np.array([0, 1, 0, 1, 1, 0, 0, 1])
        return rng.normal(size=(8, 12)) + np.eye(12)[labels], labels
    labels = rng.integers(0, 2, 25)
    features = rng.normal(size=(25, 3)) + np.eye(3)[labels] * 1.5
    if kind == "rank-deficient":  # a fourth feature that repeats the first: 4 dimensions, rank 3
        features = np.concatenate([features, 2 * features[:, :1]], axis=1)
    return features, labels


@pytest.mark.parametrize("kind", ["full rank", "rank-deficient", "fewer examples than features"])
def test_logme_is_the_largest_log_evidence_over_alpha_and_beta(kind):
    # The evidence of a Bayesian linear regression y = F w + noise, w ~ N(0, I / alpha),
    # noise ~ N(0, I / beta), is y ~ N(0, I / beta + F F^T / alpha); LogME maximises it per
    # class (per example) and averages over classes. Check against a brute-force grid,
    # also where the features span fewer directions than they have (the prior-only ones).
    features, labels = _features(kind)
    n = len(labels)

    def log_evidence(y, alpha, beta):
        covariance = np.eye(n) / beta + features @ features.T / alpha
        sign, log_det = np.linalg.slogdet(covariance)
        return -0.5 * (n * np.log(2 * np.pi) + log_det + y @ np.linalg.solve(covariance, y)) / n

    grid = np.exp(np.linspace(-6, 6, 121))
    best = np.mean([max(log_evidence((labels == k).astype(float), a, b) for a in grid for b in grid) for k in range(2)])
    assert scores.logme(features, labels) == pytest.approx(best, abs=2e-3)
    assert scores.logme(features, labels) >= best - 1e-9


def test_a_pair_scores_what_both_sources_predict_together():
    labels = np.array([0, 1, 2] * 20)
    # Source a tells class 0 from {1, 2}; source b tells class 1 from {0, 2}: together they
    # determine the label, alone neither does.
    a = np.where((labels == 0)[:, None], [0.9, 0.1], [0.1, 0.9])
    b = np.where((labels == 1)[:, None], [0.9, 0.1], [0.1, 0.9])
    together = scores.leep_of_pair(a, b, labels)
    assert together > max(scores.leep(a, labels), scores.leep(b, labels)) + 0.3
    pair_classes = a.argmax(axis=1) * 2 + b.argmax(axis=1)
    assert scores.nce(pair_classes, labels) == pytest.approx(0.0, abs=1e-12)
    # The pair is LEEP of the product source, whose n x (Z1 * Z2) outputs are built here.
    rng = np.random.default_rng(2)
    c = rng.dirichlet(np.ones(4), size=len(labels))
    product = (a[:, :, None] * c[:, None, :]).reshape(len(labels), -1)
    assert scores.leep_of_pair(a, c, labels) == pytest.approx(scores.leep(product, labels), rel=1e-12)
    with pytest.raises(ConfigError, match="softmax probabilities"):
        scores.leep_of_pair(a, np.log(c), labels)
    # A constant partner adds nothing: the pair scores as the first source alone.
    constant = np.tile([0.3, 0.5, 0.2], (len(labels), 1))
    assert scores.leep_of_pair(a, constant, labels) == pytest.approx(scores.leep(a, labels))


def test_logme_of_features_that_are_all_zero_is_the_evidence_of_noise_alone():
    labels = np.array([0, 1, 1, 0, 1])
    # y ~ N(0, I / beta) with beta = n / ||y||^2 maximised, per class, per example.
    expected = np.mean([0.5 * (np.log(5 / k) - np.log(2 * np.pi) - 1.0) for k in (2, 3)])
    assert scores.logme(np.zeros((5, 4)), labels) == pytest.approx(expected)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="softmax probabilities"):
        scores.leep(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ConfigError, match="shapes"):
        scores.leep(np.full((3, 2), 0.5), np.array([0, 1]))
    with pytest.raises(ConfigError, match="at least one labelled"):
        scores.nce(np.zeros((0,), int), np.zeros((0,), int))
    with pytest.raises(ConfigError, match="class indices"):
        scores.logme(np.zeros((2, 2)), np.array([0.5, 1.0]))
    with pytest.raises(ConfigError, match="NaN"):
        scores.logme(np.array([[np.nan, 1.0]]), np.array([0]))
