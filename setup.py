"""Installs the sskt_tf library (pip install -e .)."""

from pathlib import Path

from setuptools import find_packages, setup


def _requirements(name):
    lines = Path(__file__).with_name(name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setup(
    name="sskt_tf",
    version="0.1.0",
    description="Self-Supervised Knowledge Transfer (WACV 2022) in TensorFlow/Keras",
    long_description=Path(__file__).with_name("README.md").read_text() if Path(__file__).with_name("README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sskt_tf", "sskt_tf.*"]),
    python_requires=">=3.10",
    install_requires=_requirements("requirements.txt"),
    extras_require={
        "convert": _requirements("requirements-convert.txt"),
        "plot": _requirements("requirements-plot.txt"),
        "test": _requirements("requirements-test.txt") + _requirements("requirements-convert.txt")
        + _requirements("requirements-plot.txt"),
    },
)
