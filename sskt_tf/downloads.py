"""What a run would fetch from the network, where Keras keeps what it fetched, and whether hosts answer.

The up-front check of a run (:mod:`sskt_tf.training.availability`) asks each dataset kind and
source family what it lacks on this machine as :class:`Missing` items, then probes the hosts
of the items that would be downloaded, so that an offline machine fails in seconds with every
missing piece named instead of retrying one download for minutes.
"""

import concurrent.futures
import dataclasses
import os
import socket
import urllib.parse
import urllib.request

# How long a host may take to accept a connection before it counts as unreachable.
PROBE_TIMEOUT_SECONDS = 3.0


@dataclasses.dataclass(frozen=True)
class Missing:
    """Something a run needs that is not on this machine.

    Attributes:
        what: one sentence naming it (``"Dataset 'cifar10' is not prepared in ~/tensorflow_datasets."``).
        offline: how to get it without network access on this machine (copy a file, pass a flag,
            install a package); empty when there is nothing more to say.
        url: where the run downloads it from when the network allows; empty for something no run
            downloads (a missing file, a package to install).
    """

    what: str
    offline: str = ""
    url: str = ""

    def line(self):
        """``what``, then the offline way to get it."""
        return f"{self.what} {self.offline}".strip()


def keras_home():
    """The directory Keras caches downloads under: ``$KERAS_HOME`` or ``~/.keras``, as ``keras.utils.get_file``."""
    return os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))


def keras_model_cache(file_name):
    """Where ``keras.utils.get_file(file_name, cache_subdir="models")`` keeps (or looks for) ``file_name``."""
    return os.path.join(keras_home(), "models", file_name)


def _address(url):
    """``(host, port)`` a download of ``url`` connects to: the URL's own, or its scheme's proxy."""
    parsed = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


def _answers(address, timeout):
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:  # no name resolution, refused, unreachable, timed out
        return False


def unreachable(urls, timeout=PROBE_TIMEOUT_SECONDS):
    """The URLs whose host (or proxy, when one is set for the scheme) does not accept a connection.

    All hosts are tried at once, so the answer takes at most about ``timeout`` seconds.

    Args:
        urls: download URLs.
        timeout: seconds each connection may take.

    Returns:
        The sorted unreachable URLs.
    """
    addresses = {url: _address(url) for url in set(urls)}
    distinct = list(dict.fromkeys(addresses.values()))
    if not distinct:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(distinct)) as pool:
        answers = dict(zip(distinct, pool.map(lambda address: _answers(address, timeout), distinct)))
    return sorted(url for url, address in addresses.items() if not answers[address])
