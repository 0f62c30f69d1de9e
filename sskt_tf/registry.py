"""What every extension point is: a :class:`Registry` of named plug-ins.

Methods (``--method``), source families (``--sources``), dataset kinds (``--dataset``) and
target networks (``--target``) each keep one; the rest of the package finds a plug-in only
through its registry, so a new one is a module that registers itself.
"""

from sskt_tf.errors import ConfigError


def _no_conflict(entry, other):
    del entry, other


class Registry:
    """Plug-ins of one kind, each under its unique ``name`` attribute.

    Args:
        kind: what an entry is, for messages (``"Method"``, ``"Target"``).
        flag: the flag whose values name the entries (``"method"``), for :meth:`get`'s
            error; None for a registry resolved otherwise (by prefix or spec).
        conflict: ``conflict(entry, other) -> message or None``: a clash besides the
            name (a prefix both take), checked against every registered entry.
        order: sort key of :meth:`entries` (stable: ties keep the registration order).
    """

    def __init__(self, kind, flag=None, conflict=_no_conflict, order=None):
        self.kind = kind
        self.flag = flag
        self._conflict = conflict
        self._order = order
        self._entries = {}

    def register(self, entry):
        """Adds ``entry``; returns it.

        Raises:
            ValueError: its name is taken, or it clashes with a registered entry.
        """
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is registered twice.")
        for other in self._entries.values():
            message = self._conflict(entry, other)
            if message:
                raise ValueError(message)
        self._entries[entry.name] = entry
        return entry

    def unregister(self, name):
        """Removes an entry (a test's own, for instance); unknown names are ignored."""
        self._entries.pop(name, None)

    def entries(self):
        """The registered entries, in the registry's order."""
        entries = list(self._entries.values())
        return sorted(entries, key=self._order) if self._order else entries

    def names(self):
        """The registered names, in the registry's order."""
        return tuple(entry.name for entry in self.entries())

    def get(self, name):
        """The entry called ``name``.

        Raises:
            ConfigError: no entry has that name (the message lists them).
        """
        if name not in self._entries:
            raise ConfigError(f"Unknown --{self.flag}={name}; choose one of {', '.join(self.names())}.")
        return self._entries[name]
