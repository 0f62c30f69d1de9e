"""Soft-label cache: the sources' logits on K fixed views of every training image.

===============  =====================================================================
``settings``     the cache's files, the settings a run must match, fingerprints
``placeholder``  :class:`CachedSource`: stands for a source whose logits are cached
``writer``       :func:`write`: runs the sources once over K views of the training set
``reader``       :class:`SoftLabelCache`: training batches that carry the logits
``merge``        :func:`merge`: caches of single sources joined into one of all of them
``stats``        what a source's soft labels say about the target's classes
``run``          a run's cache: opened, checked against the run, its training batches
===============  =====================================================================
"""

from sskt_tf.soft_labels.merge import merge
from sskt_tf.soft_labels.placeholder import CachedSource
from sskt_tf.soft_labels.reader import SoftLabelCache
from sskt_tf.soft_labels.run import cached_data, check_config, mismatch_as_config_error, open_cache
from sskt_tf.soft_labels.settings import (
    DTYPES,
    FORMAT_VERSION,
    MANIFEST,
    MISMATCH_MARKER,
    PROGRESS,
    TOP_K_FILL,
    example_fingerprint,
    indexed_examples,
    training_settings,
)
from sskt_tf.soft_labels.writer import write

__all__ = [
    "DTYPES",
    "FORMAT_VERSION",
    "MANIFEST",
    "MISMATCH_MARKER",
    "PROGRESS",
    "TOP_K_FILL",
    "CachedSource",
    "SoftLabelCache",
    "cached_data",
    "check_config",
    "example_fingerprint",
    "indexed_examples",
    "merge",
    "mismatch_as_config_error",
    "open_cache",
    "training_settings",
    "write",
]
