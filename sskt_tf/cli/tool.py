"""How every command-line tool runs: flag errors and failures become one line and an exit code."""

import os
import sys
import textwrap

from absl import app, flags

from sskt_tf.errors import ConfigError, Preempted, TrainingDivergedError

HELP_ARGUMENTS = ("-h", "-help", "--help", "-helpshort", "--helpshort", "-?")
# Modules whose flags are not the tool's: absl's own, and those of libraries.
_LIBRARY_FLAG_MODULES = ("absl", "tensorflow", "tensorflow_datasets", "keras", "tf_keras")
_OTHER_TOPIC = "Options of this tool"


_CONFIG_FLAGS_MODULE = "sskt_tf.training.flags"  # where define_flags() defines TrainConfig's flags


def _topic(module, flag_name):
    if module != _CONFIG_FLAGS_MODULE:
        return _OTHER_TOPIC
    from sskt_tf.training.config import flag_group  # no TensorFlow import

    return flag_group(flag_name) or _OTHER_TOPIC


def _flag_entry(flag, module):
    if flag.boolean:
        heading = f"  --[no]{flag.name} (default: {'true' if flag.default else 'false'})"
    else:
        heading = f"  --{flag.name} (default: {flag.default_as_str or repr('')})"
    accepted = _choices(module, flag.name)
    help_text = (flag.help or "") + (f" One of: {', '.join(accepted)}." if accepted else "")
    body = textwrap.fill(help_text, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return f"{heading}\n{body}"


def _choices(module, flag_name):
    """The values a TrainConfig flag accepts (None for other flags, or any value)."""
    if module != _CONFIG_FLAGS_MODULE:
        return None
    from sskt_tf.training.config import choices

    return choices(flag_name)


def help_text(program, description="", flag_values=flags.FLAGS):
    """What ``--help`` prints: the tool's own flags, grouped by topic, with their defaults.

    absl's (and any library's) flags are left to ``--helpfull``.

    Args:
        program: the command, for the usage line.
        description: one paragraph on what the tool does.
        flag_values: the ``FlagValues`` the tool defined its flags in.

    Returns:
        The text, ending with a newline.
    """
    topics = {_OTHER_TOPIC: {}}  # the tool's own options first, then TrainConfig's by topic
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.split(".")[0] in _LIBRARY_FLAG_MODULES:
            continue
        for flag in module_flags:
            topics.setdefault(_topic(module, flag.name), {})[flag.name] = (flag, module)
    lines = [f"usage: {program} [--flagfile=FILE] [--flag=value ...]"]
    if description:
        lines += ["", textwrap.fill(description, width=100)]
    for topic, topic_flags in topics.items():
        if topic_flags:
            lines += ["", f"{topic}:"] + [_flag_entry(flag, module) for flag, module in topic_flags.values()]
    lines += ["", "--flagfile=FILE reads flags from a file (one a line); --helpfull also lists absl's flags."]
    return "\n".join(lines) + "\n"


def _description():
    """The first paragraph of the running tool's docstring, without reStructuredText markup."""
    doc = (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip().split("\n\n")[0]
    return " ".join(doc.replace("``", "").split())


def parse_flags_or_exit(argv):
    """absl flag parsing whose errors end like every other bad input: one line, exit 2.

    ``--help`` (``-h``, ``--helpshort``) prints :func:`help_text` and exits 0.
    Pass as ``app.run(main, flags_parser=parse_flags_or_exit)``.
    """
    if any(argument in HELP_ARGUMENTS for argument in argv[1:]):
        print(help_text(os.path.basename(argv[0]), _description()), end="")
        sys.exit(0)
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
