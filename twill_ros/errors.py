"""How an error reads in a one-line message (command line, node start-up)."""

from __future__ import annotations


def error_text(error: BaseException) -> str:
    """The error's message: a KeyError's ``str()`` is its repr (the message in quotes)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
