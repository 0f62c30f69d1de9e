"""TensorFlow's start-up noise, kept off the terminal.

Importing TensorFlow, and finding its devices, prints half a dozen C++ log lines on every
start (``All log messages before absl::InitializeLog() ...``, oneDNN's round-off note,
``Could not find cuda drivers``, ``failed call to cuInit: ... CUDA error`` on a machine
without a GPU). The last one reads like the cause of whatever error follows it. This module
imports TensorFlow and lists its devices with the process' stderr captured, then writes back
every captured line except those known start-up messages: warnings and errors of other kinds
still show. It imports nothing of TensorFlow itself, so ``sskt_tf`` can call it first.

``SSKT_TF_STARTUP_LOGS=1`` (or TensorFlow imported before ``sskt_tf``) shows everything.
"""

import os
import re
import sys
import tempfile

SHOW_VARIABLE = "SSKT_TF_STARTUP_LOGS"

# TensorFlow's C++ log line: severity letter, date, time, thread, file:line] message.
_CPP_LOG_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} [\d:.]+\s+\d+ (?P<file>[\w.]+):\d+\] ")
# Informational and warning lines are start-up notes; of the errors, only those of a CUDA
# platform that is not there.
_NOISE_FILES_AT_ANY_SEVERITY = ("cuda_platform.cc", "cuda_executor.cc", "cuda_diagnostics.cc", "cuda_dnn.cc")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def is_startup_noise(line):
    """Whether ``line`` starts one of TensorFlow's start-up messages.

    Args:
        line: one line of captured stderr, without its newline.

    Returns:
        True for the absl preamble, informational or warning C++ log lines, and the
        errors of a missing CUDA platform; False for anything else.
    """
    if line.startswith(_ABSL_PREAMBLE):
        return True
    match = _CPP_LOG_LINE.match(line)
    if not match:
        return False
    return match["severity"] in "IW" or match["file"] in _NOISE_FILES_AT_ANY_SEVERITY


def without_startup_noise(lines):
    """The lines that are not start-up messages.

    A C++ log message may go on over several lines (``cpu_feature_guard``'s does): lines
    that follow a C++ log line without starting a new one belong to it, and go with it.

    Args:
        lines: captured stderr, one string a line.

    Returns:
        The kept lines, in order.
    """
    kept, dropping = [], False
    for line in lines:
        if _CPP_LOG_LINE.match(line) or line.startswith(_ABSL_PREAMBLE):
            dropping = is_startup_noise(line)
        if not dropping:
            kept.append(line)
    return kept


def import_tensorflow_quietly():
    """Imports TensorFlow and finds its devices with the start-up noise filtered out.

    Does nothing when TensorFlow is already imported or ``SSKT_TF_STARTUP_LOGS=1``.
    Whatever else the import writes to stderr is written back, also when it fails.
    """
    if "tensorflow" in sys.modules or os.environ.get(SHOW_VARIABLE) == "1":
        return
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by an object without a file
        return
    saved_fd = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), stderr_fd)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where the CUDA platform reports it is missing
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, stderr_fd)
            os.close(saved_fd)
            captured.seek(0)
            kept = without_startup_noise(captured.read().decode(errors="replace").splitlines())
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
