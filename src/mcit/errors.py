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


def one_line(error: BaseException, limit: int = 300, empty: str = "(no message)") -> str:
    """An exception's message on one line: its non-empty lines, stripped, joined by spaces.

    Library messages often start with a newline (transformers' "requires torchvision"
    errors do), so keeping only the first line would keep nothing.

    Args:
        error: Any exception.
        limit: Longest result; a longer message is cut and ends with "...".
        empty: What to return for a message without text.

    Returns:
        The collapsed message, or ``empty``.
    """
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text or empty
