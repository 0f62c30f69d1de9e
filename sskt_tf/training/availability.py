"""The up-front check that everything a run needs is on this machine, or can be downloaded now.

It runs while the configuration is validated, before anything is downloaded, built or
written, and takes seconds: each dataset kind and source family says what it lacks
(:class:`~sskt_tf.downloads.Missing`), files named in flags are looked for, and the hosts
of what would be downloaded are probed once. Without a network the run then fails at
once with one error that lists every missing item and the offline way to get each, rather
than retrying one download for minutes and failing on the next item after that. With a
network, what is missing downloads as the run goes (and ``--nodownload`` keeps tfds from it).
"""

import logging
import os
import urllib.parse

from sskt_tf import data as data_lib
from sskt_tf import downloads
from sskt_tf import methods as methods_lib
from sskt_tf import sources as sources_lib
from sskt_tf.errors import ConfigError


def _missing_file(path, flag):
    if path and not os.path.exists(os.path.expanduser(path)):
        return [downloads.Missing(what=f"--{flag}={path} does not exist.")]
    return []


def _missing_unlabeled(config):
    if not config.unlabeled_dataset:
        return []
    return data_lib.missing_data(config.unlabeled_dataset, config.data_dir or None, config.download)


def _missing_sources(config, building_cache):
    if not methods_lib.get(config.method).uses_sources or (config.soft_label_cache and not building_cache):
        return []
    missing = []
    for spec in config.sources:
        family, name = sources_lib.parse_spec(spec)  # an unknown name is a flag error, raised as such
        weights = family.flag_weights(config)
        try:
            sources_lib.check_spec(spec, weights=weights)
        except ConfigError as error:  # a package to install, a file to copy
            missing.append(downloads.Missing(what=str(error)))
            continue
        item = family.missing(name, weights)
        missing += [item] if item else []
    return missing


def missing_items(config, building_cache=False):
    """Everything ``config``'s run needs that is not on this machine, in milliseconds and offline.

    Args:
        config: a :class:`sskt_tf.TrainConfig` whose flags passed their own checks.
        building_cache: ``config`` is the soft-label cache builder's: its ``--soft_label_cache``
            is the directory to write, and the sources run (a training run's cache stands for them).

    Returns:
        A list of :class:`~sskt_tf.downloads.Missing`: the dataset and unlabelled images, each
        source's weights, and the files flags name (the method's, such as ``--teacher``; ``--pretrained``,
        ``--soft_label_cache``). Items with a ``url`` download when the network allows.
    """
    method_files = methods_lib.get(config.method).files(config)
    return (
        data_lib.missing_data(config.dataset, config.data_dir or None, config.download)
        + _missing_unlabeled(config)
        + _missing_sources(config, building_cache)
        + [item for flag, path in method_files.items() for item in _missing_file(path, flag)]
        + _missing_file(config.pretrained, "pretrained")
        + _missing_file("" if building_cache else config.soft_label_cache, "soft_label_cache")
    )


def _host(url):
    return urllib.parse.urlsplit(url).hostname


def check_available(config, unreachable=downloads.unreachable, building_cache=False):
    """Stops a run that cannot get what it needs, naming every missing item at once.

    Args:
        config: a :class:`sskt_tf.TrainConfig`.
        unreachable: ``unreachable(urls) -> urls`` whose host does not answer
            (:func:`sskt_tf.downloads.unreachable`; replaceable in tests).
        building_cache: see :func:`missing_items`.

    Raises:
        ConfigError: something is missing that no download will bring (a file, a package, a
            dataset with ``--nodownload``), or a download whose host does not answer; the
            message lists all of them, each with its offline way.
    """
    missing = missing_items(config, building_cache)
    if not missing:
        return
    offline = set(unreachable([item.url for item in missing if item.url]))
    blocking = [item for item in missing if not item.url or item.url in offline]
    if not blocking:
        for item in missing:
            logging.info("%s It downloads from %s.", item.what, _host(item.url))
        return
    count = f"{len(blocking)} thing{'s' if len(blocking) > 1 else ''} it needs {'are' if len(blocking) > 1 else 'is'}"
    network = ""
    if offline:
        hosts = ", ".join(sorted({_host(url) for url in offline}))
        network = f" ({hosts} did not answer within {downloads.PROBE_TIMEOUT_SECONDS:g} s: no network?)"
    lines = [f"  {number}. {item.line()}" for number, item in enumerate(blocking, 1)]
    raise ConfigError(f"This run cannot start: {count} not on this machine{network}.\n" + "\n".join(lines))
