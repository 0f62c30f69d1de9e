"""Running the repository's scripts in a subprocess, as a user would."""

import os
import signal
import subprocess
import sys
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_python(args, timeout=600, env=None):
    """Runs ``python args...`` from the repository root; returns the CompletedProcess.

    The subprocess imports ``sskt_tf`` from this checkout (``PYTHONPATH``), whatever
    is installed, and prints Python's stack if it crashes (``PYTHONFAULTHANDLER``).
    A subprocess that dies of a segmentation fault is run again, up to twice, with a
    warning that carries the crash's Python stack: TensorFlow 2.21's CPU runtime has
    segfaulted in a compute thread a few seconds into ``tests/helpers/mirrored_check.py``
    under the two-process test suite (in two of three fresh-clone CI runs on one
    machine, never in 40 runs of the script alone), and not on the rerun. A third
    crash, or any other failure, is returned as it is.

    Args:
        args: the script and its arguments, e.g. ``["tools/train.py", "--epochs=1"]``.
        timeout: seconds before the subprocess is killed.
        env: variables added to (or overriding) the inherited environment.

    Returns:
        The ``subprocess.CompletedProcess``, with text ``stdout`` and ``stderr``.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONFAULTHANDLER="1", PYTHONPATH=REPO, **(env or {}))

    def run():
        return subprocess.run(
            [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )

    result = run()
    for _ in range(2):
        if result.returncode != -signal.SIGSEGV:
            break
        crash = result.stderr
        stack = crash[crash.find("Fatal Python error") :] if "Fatal Python error" in crash else crash
        warnings.warn(
            f"{' '.join(args)} died of a segmentation fault and is run again; its stack:\n{stack[:4000]}",
            stacklevel=2,
        )
        result = run()
    return result
