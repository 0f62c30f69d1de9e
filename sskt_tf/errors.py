"""User-facing errors.

Every problem caused by what the user asked for (a flag, a path, a dataset, a
checkpoint) is raised as a :class:`ConfigError` whose message says what is wrong
and how to fix it. ``tools/train.py`` prints these messages without a traceback.
"""


class ConfigError(ValueError):
    """Bad flags, missing files or data, or incompatible components."""


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss and was stopped."""


class Preempted(RuntimeError):
    """Training was asked to stop (SIGTERM) and left a backup to resume from.

    Rerunning the same command resumes at the step the backup holds.
    """
