"""The tests' subprocess runner reruns a script, up to twice, when it dies of a segmentation fault."""

import warnings

import pytest
from helpers.processes import run_python

# Segfaults the first time (it leaves a marker file), prints "ran again" the second.
CRASH_ONCE = """
import os, signal, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").close()
    os.kill(os.getpid(), signal.SIGSEGV)
print("ran again")
"""

CRASH_ALWAYS = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"


def test_a_script_that_segfaults_once_is_run_again_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="segmentation fault"):
        result = run_python(["-c", CRASH_ONCE, str(tmp_path / "crashed")])
    assert result.returncode == 0
    assert result.stdout.strip() == "ran again"


def test_a_third_segfault_and_other_failures_are_returned_as_they_are():
    with pytest.warns(UserWarning, match="segmentation fault") as crashes:
        assert run_python(["-c", CRASH_ALWAYS]).returncode < 0
    assert len(crashes) == 2  # run three times in all
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary failure is not run again
        assert run_python(["-c", "import sys; sys.exit(3)"]).returncode == 3
