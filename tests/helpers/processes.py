"""Running the repository's scripts in a subprocess, as a user would."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(args, timeout=600, env=None):
    """Runs ``python args...`` from the repository root; returns the CompletedProcess.

    The subprocess imports ``sskt_tf`` from this checkout (``PYTHONPATH``), whatever
    is installed.

    Args:
        args: the script and its arguments, e.g. ``["tools/train.py", "--epochs=1"]``.
        timeout: seconds before the subprocess is killed.
        env: variables added to (or overriding) the inherited environment.

    Returns:
        The ``subprocess.CompletedProcess``, with text ``stdout`` and ``stderr``.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO, **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
