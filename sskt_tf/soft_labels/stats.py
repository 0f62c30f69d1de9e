"""What a source's soft labels tell about a target's classes, before training on them.

SSKT can only help when the source's outputs on the target's images carry
information about the target's classes. :func:`soft_label_statistics` measures it
from the source logits on the target's labelled training images:

* the entropy of the soft labels at the training temperature (how soft they are,
  against ``log(source classes)`` for uniform ones);
* for each target class, the source classes it is mapped to (mean soft label and
  most frequent top-1 source class);
* the mutual information ``I(Y; Z)`` between the target label ``Y`` and the source's
  top-1 class ``Z`` (in nats; 0 = the hard predictions say nothing about the target
  class, ``H(Y)`` = they determine it), and the accuracy of the best mapping from
  source top-1 class to target class (the majority target class of each source class),
  against the majority-class baseline.
"""

import numpy as np


def softmax(logits, temperature=1.0):
    """Row-wise softmax of ``logits / temperature`` (float64, numerically stable)."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def _entropy(probabilities, axis=-1):
    return -np.sum(
        np.where(probabilities > 0, probabilities * np.log(np.maximum(probabilities, 1e-300)), 0.0), axis=axis
    )


def soft_label_statistics(logits, labels, temperature=1.0, source_class_names=None, target_class_names=None):
    """Statistics of one source's soft labels on a target's labelled images.

    Args:
        logits: ``[N, S]`` source logits.
        labels: ``[N]`` integer target labels.
        temperature: the T the soft labels are taken at.
        source_class_names: names of the S source classes (default: indices).
        target_class_names: names of the target classes (default: indices).

    Returns:
        A JSON-serialisable dict: ``examples``, ``source_classes``,
        ``temperature``, ``mean_entropy`` and ``max_entropy`` (nats, at T),
        ``mean_max_probability`` (at T), ``mean_logit_std`` (each image's
        logits' standard deviation over classes, averaged), ``mutual_information`` and
        ``label_entropy`` (nats), ``mapping_accuracy`` and
        ``majority_accuracy``, and ``per_class``: for each target class its
        ``examples``, ``top_source_class`` (most frequent top-1),
        ``top_source_share`` and ``mean_soft_label`` (at T).
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels).astype(int)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        raise ValueError(f"Need [N, S] logits and [N] labels with N > 0, got {logits.shape} and {labels.shape}.")
    count_source = logits.shape[1]
    count_target = int(labels.max()) + 1
    source_names = list(source_class_names or [str(i) for i in range(count_source)])
    target_names = list(target_class_names or [str(i) for i in range(count_target)])
    soft = softmax(logits, temperature)
    top = logits.argmax(axis=1)
    joint = np.zeros((count_target, count_source))
    np.add.at(joint, (labels, top), 1.0)
    joint /= joint.sum()
    label_marginal, top_marginal = joint.sum(axis=1), joint.sum(axis=0)
    mutual_information = float(_entropy(label_marginal) + _entropy(top_marginal) - _entropy(joint.ravel()))
    per_class = {}
    for target in range(count_target):
        members = labels == target
        if not members.any():
            continue
        counts = np.bincount(top[members], minlength=count_source)
        per_class[target_names[target]] = dict(
            examples=int(members.sum()),
            top_source_class=source_names[int(counts.argmax())],
            top_source_share=float(counts.max() / members.sum()),
            mean_soft_label={source_names[s]: float(p) for s, p in enumerate(soft[members].mean(axis=0))},
        )
    return dict(
        examples=int(len(labels)),
        source_classes=int(count_source),
        temperature=float(temperature),
        mean_entropy=float(_entropy(soft).mean()),
        max_entropy=float(np.log(count_source)),
        mean_max_probability=float(soft.max(axis=1).mean()),
        # The spread the "spread:S" control gives a random network (sskt_tf.soft_labels.writer.control_logits).
        mean_logit_std=float(logits.std(axis=1).mean()),
        mutual_information=max(mutual_information, 0.0),
        label_entropy=float(_entropy(label_marginal)),
        mapping_accuracy=float(joint.max(axis=0).sum()),
        majority_accuracy=float(label_marginal.max()),
        per_class=per_class,
    )
