"""Errors that mean "the user asked for something we cannot do" (exit code 2, no traceback)."""


class UserError(Exception):
    """A problem with the user's input: config, names, files, run directory.

    The CLI prints ``str(error)`` on one line and exits with status 2.
    """
