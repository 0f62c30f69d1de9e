"""The up-front check: every missing item of a run named at once, in seconds, before any download."""

import logging
import socket
import time

import pytest
from helpers.processes import run_python

from sskt_tf import downloads
from sskt_tf.errors import ConfigError
from sskt_tf.sources.keras_applications import IMAGENET_WEIGHTS_URLS
from sskt_tf.training import availability
from sskt_tf.training.config import TrainConfig

_RESNET50_URL = IMAGENET_WEIGHTS_URLS["resnet50"]


def _config(tmp_path, **overrides):
    settings = dict(dataset="cifar10", data_dir=str(tmp_path / "tfds"), sources=["imagenet/resnet50"])
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


def test_an_offline_run_names_every_missing_item_in_seconds(tmp_path):
    # No network for this process: every download goes through a proxy that refuses connections.
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    proxy = f"http://127.0.0.1:{closed_port.getsockname()[1]}"
    start = time.time()
    result = run_python(
        [
            "tools/train.py",
            "--dataset=cifar10",
            f"--data_dir={tmp_path / 'tfds'}",
            "--sources=places365/resnet50,imagenet/resnet50,imagenet/efficientnet_lite0",
            f"--source_weights={tmp_path / 'lite0.pth'}",  # for both imagenet sources: a file that is not there
            f"--model_dir={tmp_path / 'run'}",
        ],
        env={"KERAS_HOME": str(tmp_path / "keras_home"), "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": ""},
    )
    seconds = time.time() - start
    closed_port.close()
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(("error:", "  "))]
    assert errors[0].startswith("error: This run cannot start: 4 things it needs are not on this machine (")
    assert "www.cs.toronto.edu" in errors[0] and "no network?" in errors[0]
    assert errors[1].startswith("  1. Dataset 'cifar10' is not prepared in ") and "tfds build cifar10" in errors[1]
    assert errors[2].startswith("  2. The Places365 weights of places365/resnet50 are not converted in ")
    assert "resnet50_places365.pth.tar" in errors[2]
    # A weights file a flag names that is not there: listed once a source, never downloaded.
    assert errors[3].startswith("  3. --source_weights file") and "lite0.pth" in errors[3]
    assert errors[4].startswith("  4. --source_weights file") and len(errors) == 5
    assert "Traceback" not in result.stderr and "Retrying" not in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
    assert seconds < 60  # tfds alone retries for minutes offline; the check answers before any download


def test_with_a_network_missing_downloads_are_logged_and_the_run_goes_on(tmp_path, keras_home, caplog):
    probed = []
    with caplog.at_level(logging.INFO):
        availability.check_available(_config(tmp_path), unreachable=lambda urls: probed.extend(urls) or [])
    assert sorted(probed) == sorted(["https://www.cs.toronto.edu/~kriz/cifar.html", _RESNET50_URL])
    assert "Dataset 'cifar10' is not prepared" in caplog.text and "downloads from storage.googleapis.com" in caplog.text


def test_what_no_download_brings_stops_the_run_even_with_a_network(tmp_path, keras_home):
    config = _config(tmp_path, download=False, method="kd", teacher=str(tmp_path / "teacher.keras"))
    with pytest.raises(ConfigError) as error:
        availability.check_available(config, unreachable=lambda urls: [])
    message = str(error.value)
    assert "2 things it needs are not on this machine." in message  # no host named: the network answered
    assert "1. Dataset 'cifar10' is not prepared in" in message and "and --download is off" in message
    assert "2. --teacher=" in message and "teacher.keras does not exist" in message


def test_cached_weights_and_prepared_data_are_not_missing(tmp_path, keras_home, digits_folder):
    (keras_home / "models").mkdir(parents=True)
    (keras_home / "models" / _RESNET50_URL.rsplit("/", 1)[1]).write_bytes(b"weights")
    config = _config(tmp_path, dataset=f"folder:{digits_folder}", unlabeled_dataset=f"folder:{digits_folder}")
    assert availability.missing_items(config) == []
    # A soft-label cache stands for the sources: their weights are not needed then.
    uncached = _config(tmp_path, sources=["imagenet/resnet101"], soft_label_cache=str(tmp_path))
    assert [item.url for item in availability.missing_items(uncached)] == [
        "https://www.cs.toronto.edu/~kriz/cifar.html"
    ]


def test_an_unknown_source_is_a_flag_error_not_a_missing_item(tmp_path):
    with pytest.raises(ConfigError, match="Unknown source 'imagenet/resnet5'"):
        availability.missing_items(_config(tmp_path, sources=["imagenet/resnet5"]))


def test_every_keras_application_has_its_weights_url():
    from sskt_tf.sources.keras_applications import IMAGENET_ARCHS

    assert set(IMAGENET_WEIGHTS_URLS) == set(IMAGENET_ARCHS)
    assert all(url.startswith("https://storage.googleapis.com/") for url in IMAGENET_WEIGHTS_URLS.values())


def test_unreachable_probes_each_host_once_and_names_the_silent_ones(monkeypatch):
    tried = []

    def fake_connection(address, timeout):
        tried.append(address)
        if address[0] != "up.example":
            raise OSError("no route")
        return socket.socket()

    monkeypatch.setattr(socket, "create_connection", fake_connection)
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    urls = ["https://up.example/a", "https://up.example/b", "http://down.example/c"]
    assert downloads.unreachable(urls) == ["http://down.example/c"]
    assert sorted(tried) == [("down.example", 80), ("up.example", 443)]
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    tried.clear()
    assert downloads.unreachable(["https://up.example/a"]) == ["https://up.example/a"]  # the proxy did not answer
    assert tried == [("proxy.example", 3128)]


def test_the_cache_builder_needs_its_sources_not_its_output_directory(tmp_path, keras_home, digits_folder):
    config = _config(tmp_path, dataset=f"folder:{digits_folder}", soft_label_cache=str(tmp_path / "new_cache"))
    assert [item.what for item in availability.missing_items(config)] == [
        f"--soft_label_cache={tmp_path / 'new_cache'} does not exist."
    ]  # a training run reads the cache instead of running the sources
    building = availability.missing_items(config, building_cache=True)
    assert [item.url for item in building] == [_RESNET50_URL]  # the builder runs the sources and writes the cache
