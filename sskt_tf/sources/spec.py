"""Command-line source specs (``imagenet/<arch>``, ``places365/<arch>``, a ``.keras`` path, ...).

Every spec is resolved by the source-family registry (:mod:`sskt_tf.sources.registry`);
nothing here knows a family by name.
"""

from sskt_tf.sources import registry
from sskt_tf.sources.files import require_file
from sskt_tf.sources.layer import scaled_size

# ``weights=`` value meaning "the weights the family publishes" (its download or package).
PUBLISHED = "published"


def parse_spec(spec):
    """``(SourceFamily, name)`` of a spec; see :func:`sskt_tf.sources.registry.resolve`."""
    return registry.resolve(spec)


def _family_weights(family, weights):
    if weights in (PUBLISHED, family.weights_keyword):
        return family.weights_keyword
    return weights


def check_spec(spec, weights=PUBLISHED, inspect=False):
    """Validates a source spec without building or downloading anything.

    Args:
        spec: ``<prefix>/<arch>`` or a path to a ``.keras`` file (see
            :func:`sskt_tf.sources.registry.families` for what is offered).
        weights: ``"published"`` (the family's own: a download, a package),
            None (random) or a path.
        inspect: also run the family's checks that need TensorFlow (a
            ``.keras`` file's output shape); not before a multi-worker
            strategy exists.

    Returns:
        The spec's :class:`~sskt_tf.sources.registry.SourceFamily`.

    Raises:
        ConfigError: unknown family or architecture (listing what each family
            offers), a missing file or weight package, a network of the wrong shape.
    """
    return _checked(spec, weights, inspect)[0]


def _checked(spec, weights, inspect=False):
    """``(family, name, weights)`` of a spec, checked."""
    family, name = registry.resolve(spec)
    weights = _family_weights(family, weights)
    if weights not in (None, family.weights_keyword):
        require_file(weights, f"--{family.weights_flag} file")
    family.check(name, weights)
    if inspect:
        family.inspect(name, weights)
    return family, name, weights


def from_spec(spec, image_size, scale=7 / 3, source_image_size=None, weights=PUBLISHED):
    """Builds a frozen Source from a spec.

    Args:
        spec: see :func:`check_spec`.
        image_size: the target's image side length.
        scale: resize factor of ImageNet-sized families (``floor(image_size * scale)``).
        source_image_size: explicit source side length; overrides ``scale``
            (and sets the input size of a ``.keras`` source with flexible inputs).
        weights: see :func:`check_spec`.

    Returns:
        A :class:`sskt_tf.sources.Source`.
    """
    family, name, weights = _checked(spec, weights)
    # A user's model sees its own fixed input size, else --source_image_size, else
    # the target's images unresized: the 7/3 rule is about ImageNet-sized sources.
    size = source_image_size or (scaled_size(image_size, scale) if family.scaled else None)
    return family.build(name, weights, size)
