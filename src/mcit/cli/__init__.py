"""The ``mcit`` command line: run, sweep, select, eval, export, report, metrics, data check, ls, validate.

One module per family of commands; :mod:`mcit.cli.common` holds what they share. Importing
the package registers every command on :data:`app`.
"""

from __future__ import annotations

import sys

# Registers the commands, in the order `mcit --help` lists them (hence no import sorting here).
from mcit.cli import run_commands  # noqa: F401  # isort: skip
from mcit.cli import data_commands  # noqa: F401  # isort: skip
from mcit.cli import model_commands  # noqa: F401  # isort: skip
from mcit.cli import result_commands  # noqa: F401  # isort: skip
from mcit.cli.common import app, default_out, split_args

__all__ = ["app", "default_out", "main", "split_args"]


def main() -> None:
    app(prog_name="mcit")


if __name__ == "__main__":
    sys.exit(main())
