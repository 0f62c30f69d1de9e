"""Running the repository's scripts inside the test process, through their real entry point.

``run_script(["tools/train.py", "--epochs=1", ...])`` runs the script as ``python
tools/train.py ...`` would (``__main__``, absl's ``app.run``, the flag parser, the exit
codes) but without starting Python and importing TensorFlow again: several seconds a call
on two cores. Use :func:`helpers.processes.run_python` instead where the process itself is
the subject: the absence of a traceback on bad input, signals, several workers, a fresh
interpreter.
"""

import contextlib
import importlib
import io
import os
import runpy
import subprocess
import sys
import traceback

from absl import app, flags
from absl import logging as absl_logging

from helpers.processes import REPO

# Modules whose import defines absl flags: dropped after each run so that the next run's
# import defines them again (their flags are removed from FLAGS with the run's others).
_FLAG_DEFINING_PACKAGE = "sskt_tf.cli."
_KEPT_MODULES = {"sskt_tf.cli.tool"}
# absl's own flags (--helpfull, --only_check_args, ...) stay defined across runs.
app.define_help_flags()


@contextlib.contextmanager
def _environment(overrides):
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _log_stream(stream):
    """Sends absl's (and Python's) log records to ``stream``, as a subprocess' stderr would hold them."""
    handler = absl_logging.get_absl_handler().python_handler
    previous_stream, previous_verbosity = handler.stream, absl_logging.get_verbosity()
    handler.stream = stream
    try:
        yield
    finally:
        handler.stream = previous_stream
        absl_logging.set_verbosity(previous_verbosity)


@contextlib.contextmanager
def op_determinism_restored():
    """Undoes a run's ``--deterministic`` (``tf.config.experimental.enable_op_determinism``).

    Every test runs inside it (``tests/conftest.py``): a test that trains with ``deterministic``
    in this process must not leave determinism on for the next ones (Keras then silently turns
    ``jit_compile=True`` off).
    """
    from tensorflow.python.framework import config as tf_config  # the switch has no public "off"

    enabled = tf_config.is_op_determinism_enabled()
    try:
        yield
    finally:
        if not enabled:
            tf_config.disable_op_determinism()


@contextlib.contextmanager
def _fresh_flags():
    """Removes the flags (and the flag-defining modules) a run adds; leaves absl's own unparsed."""
    known_flags = set(flags.FLAGS)
    try:
        yield
    finally:
        for name in set(flags.FLAGS) - known_flags:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()
        for module in [m for m in sys.modules if m.startswith(_FLAG_DEFINING_PACKAGE) and m not in _KEPT_MODULES]:
            del sys.modules[module]


def _run(args, call, env):
    """Runs ``call()`` with ``sys.argv = args``; returns it as a finished process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    returncode = 0
    with _fresh_flags(), op_determinism_restored(), _environment(dict(env or {})):
        try:
            os.chdir(REPO)
            sys.argv = list(args)
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), _log_stream(stderr):
                call()
        except SystemExit as exit_:
            if isinstance(exit_.code, str):
                stderr.write(exit_.code + "\n")
            returncode = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
        except Exception:  # noqa: BLE001 - reported as a crashed process would report it
            stderr.write(traceback.format_exc())
            returncode = 1
        finally:
            sys.argv = saved_argv
            os.chdir(saved_cwd)
    return subprocess.CompletedProcess(args, returncode, stdout.getvalue(), stderr.getvalue())


def run_script(args, env=None):
    """Runs ``python args...`` in this process, from the repository root.

    Args:
        args: the script (relative to the repository root, or absolute) and its
            arguments, e.g. ``["tools/train.py", "--epochs=1"]``.
        env: environment variables set for the run's duration.

    Returns:
        A ``subprocess.CompletedProcess`` as :func:`helpers.processes.run_python`
        returns: ``returncode`` (0, the tool's exit code, or 1 with the traceback
        in ``stderr`` for an uncaught exception), text ``stdout`` and ``stderr``.
    """
    path = os.path.join(REPO, args[0])
    return _run(args, lambda: runpy.run_path(path, run_name="__main__"), env)


def run_entry_point(entry_point, args, env=None):
    """Runs a console script's entry point (``"module:function"``) as pip's generated script does.

    Args:
        entry_point: ``module:function`` from ``[project.scripts]``.
        args: ``sys.argv``: the script's name and its arguments.
        env: environment variables set for the run's duration.

    Returns:
        The finished "process", as :func:`run_script` returns it.
    """
    module, function = entry_point.split(":")
    return _run(args, lambda: getattr(importlib.import_module(module), function)(), env)
