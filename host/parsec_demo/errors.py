"""The one kind of error a user can do something about.

Library code raises a :class:`UserError` (or one of its subclasses, named after where it comes
from: ``BuildError``, ``ServiceError``, ``BootError``, ``TargetError`` ...) when the cause is
outside the program: a missing file, a package not installed, a port or socket in use, a
machine that does not boot. The command line turns it into one line,
``parsec-demo <command>: <message>``, and exits with its ``exit_code``; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can act on; its message says what happened and, if it can, what to do.

    The first line of the message is the one-line summary; further lines (a log tail, the last
    console lines of a machine) are details shown after it.
    """

    exit_code = 1


class UsageError(UserError):
    """A command line that does not parse; ``prog`` names the (sub-)command it was given to."""

    exit_code = 2

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog
