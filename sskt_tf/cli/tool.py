"""How every command-line tool runs: flag errors and failures become one line and an exit code."""

import sys

from absl import app, flags

from sskt_tf.errors import ConfigError, Preempted, TrainingDivergedError


def parse_flags_or_exit(argv):
    """absl flag parsing whose errors end like every other bad input: one line, exit 2.

    Pass as ``app.run(main, flags_parser=parse_flags_or_exit)``.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}\nRun with --helpfull to list the flags.", file=sys.stderr)
        sys.exit(2)


# Exit codes of the command-line tools: bad input 2, a diverged training run 3, a run stopped
# by SIGTERM or Ctrl-C after writing its backup 75 (EX_TEMPFAIL: "try again", the same command
# resumes), a second Ctrl-C (or one outside training) 130, as a shell reports SIGINT.
EXIT_PREEMPTED = 75
EXIT_INTERRUPTED = 130
_EXIT_CODES = ((ConfigError, 2), (flags.ValidationError, 2), (TrainingDivergedError, 3), (Preempted, EXIT_PREEMPTED))


def run_tool(argv, action):
    """The body of a tool's absl ``main``: runs ``action()`` and turns errors into exit codes.

    Positional arguments are refused; a :class:`ConfigError` (or a flag
    validation error) prints one ``error: ...`` line and exits with 2, a
    :class:`TrainingDivergedError` with 3; a :class:`Preempted` run prints one
    ``stopped: ...`` line and exits with :data:`EXIT_PREEMPTED`; a ``KeyboardInterrupt``
    (a second Ctrl-C) one ``stopped: ...`` line and :data:`EXIT_INTERRUPTED`.

    Args:
        argv: the ``main`` arguments absl passes.
        action: a function of no arguments doing the tool's work.

    Returns:
        What ``action`` returns.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])} (flags start with --).")
    try:
        return action()
    except KeyboardInterrupt:
        print(
            "stopped: Interrupted (Ctrl-C). Run the same command to resume from the last backup, if the run wrote one.",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERRUPTED)
    except tuple(error_type for error_type, _ in _EXIT_CODES) as error:
        print(f"{'stopped' if isinstance(error, Preempted) else 'error'}: {error}", file=sys.stderr)
        sys.exit(next(code for error_type, code in _EXIT_CODES if isinstance(error, error_type)))
