"""What a frozen source knows about a target: a logistic regression on its pooled features.

The reference line of a transfer study: the source's penultimate features (its global
average pool) on the target's labelled training images, unaugmented and resized and
preprocessed as the source sees them in training, fit by an L2-regularised logistic
regression whose strength is chosen by 5-fold cross-validation on those images alone;
then scored on the validation images. No target network is trained: the accuracy is
what the source's knowledge is worth with these labels and a linear read-out.
"""

import time

import keras
import numpy as np

from sskt_tf.errors import ConfigError
from sskt_tf.sources.flags import build_sources, check_source_flags
from sskt_tf.training.checks import validate
from sskt_tf.training.run_data import load_splits

# Regularisation strengths (sklearn's C) the cross-validation chooses from.
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def pooled_features(source, dataset, batch_size=256):
    """A source's pooled features on ``(uint8 image, label)`` examples: ``(features [n, d], labels [n])``.

    The features are the input of the source network's final Dense layer (its pooled
    penultimate activations), after the source's own resize and preprocessing.
    """
    dense = [layer for layer in source.model.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ConfigError(f"Source {source.name!r} has no Dense classifier whose input could be read.")
    extractor = keras.Model(source.model.inputs, dense[-1].input)
    features, labels = [], []
    for images, batch_labels in dataset.batch(batch_size).prefetch(2):
        inputs = source.preprocess_images(images.numpy().astype("float32"))
        features.append(np.asarray(extractor(inputs, training=False), np.float64))
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)


def linear_probe(config, batch_size=256):
    """Fits and scores a logistic regression on the first source's pooled features.

    Args:
        config: a :class:`sskt_tf.TrainConfig` (dataset, subset flags, ``--sources``
            with one source and its weights and size flags).
        batch_size: images per source call.

    Returns:
        A JSON-serialisable dict: ``source``, ``feature_dim``, ``train_examples``,
        ``val_examples``, ``C`` (chosen), ``cv_accuracy``, ``train_accuracy``,
        ``val_accuracy`` and ``seconds``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    specs = [spec for spec in config.sources if spec.strip()]
    if len(specs) != 1:
        raise ConfigError(f"The linear probe reads one source's features; --sources names {len(specs)}.")
    config = validate(config)
    check_source_flags(config, inspect=True)
    start = time.perf_counter()
    splits = load_splits(config)
    (source,) = build_sources(config, splits.image_size)
    train_x, train_y = pooled_features(source, splits.train, batch_size)
    val_x, val_y = pooled_features(source, splits.val, batch_size)

    def model(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))

    cv = {c: float(np.mean(cross_val_score(model(c), train_x, train_y, cv=5))) for c in C_GRID}
    best = max(cv, key=cv.get)
    fitted = model(best).fit(train_x, train_y)
    return dict(
        source=source.name,
        source_image_size=list(source.output_size((splits.image_size, splits.image_size))),
        feature_dim=int(train_x.shape[1]),
        train_examples=int(len(train_y)),
        val_examples=int(len(val_y)),
        C=best,
        cv_accuracy=cv,
        train_accuracy=float(fitted.score(train_x, train_y)),
        val_accuracy=float(fitted.score(val_x, val_y)),
        seconds=round(time.perf_counter() - start, 1),
    )
