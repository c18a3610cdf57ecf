"""Errors that mean "the user asked for something we cannot do" (exit code 2, no traceback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(Exception):
    """A problem with the user's input: config, names, files, run directory.

    The CLI prints ``str(error)`` on one line and exits with status 2.
    """


def first_error(error: ValidationError) -> str:
    """The first problem of a pydantic validation error as one line: ``field.path: message``."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message
