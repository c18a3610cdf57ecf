"""Run the commands of docs/own-model-and-data.md as written, in order, and quote what they print.

    .venv/bin/python docs/own_model_guide.py [--dir DIR] [--write] [--small] [--in-process]
    .venv/bin/python docs/own_model_guide.py --quote-from DIR [--write]

Every ``bash`` block of the guide is run, command by command, in a scratch directory (DIR,
default a new temporary one) that links the repository's ``Makefile``, ``pyproject.toml``,
``examples/`` and ``configs/`` and its ``.venv``, so the guide's relative paths
(``.venv/bin/mcit``, ``runs/...``, ``mystream/...``) work as they do in a clone, and its files
(``mystream/``, written by the guide's own ``examples/write_example_stream.py`` command) are
the ones the later commands read.

A plain code block right after a ``bash`` block quotes what that block's commands print:
whole lines of the output, in order, ``...`` standing for lines left out. The script checks
that every quoted line has a printed line of the same form (the same text once numbers and
runs of spaces are set aside), so a changed column, row, metric or message fails; with
``--write`` it copies the printed lines into the guide, and the machine they ran on into the
guide's ``<!-- machine -->`` mark. The printed outputs go to DIR/guide-output.txt, and with
the commands and the machine to DIR/guide-run.json, which ``--quote-from DIR`` quotes again
without running anything (after a change to the guide's quoted lines, not to its commands).

``--small`` adds overrides that shrink each command's work (16 records a task, one epoch, one
thread, a base stage of seconds): tests/integration/test_guide_commands.py runs the guide
this way, so a command edited in the guide is the command tested. ``--in-process`` runs
``.venv/bin/mcit`` commands (also those of a ``make`` target, as ``make -n`` lists them)
through the CLI in this process, which imports torch once for all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "own-model-and-data.md"
LINKED = ("Makefile", "pyproject.toml", "examples", "configs")
MCIT = ".venv/bin/mcit"
ELISION = "..."
MACHINE_MARK = re.compile(r"(<!-- machine -->)(.*?)(<!-- /machine -->)", re.DOTALL)

# --small: each command's own work, shrunk to seconds. The base stage is the part that
# matters: big enough that the later runs answer some questions right (shape's constant
# answer at least), so that an exported model scoring as the run did says something.
SMALL_TRAINING = ["train.epochs=3", "train.lr=3e-3", "train.batch_size=8", "eval.batch_size=16", "threads=1"]
SMALL_DEFAULT_RUN = [
    "benchmark.tasks=[color]",
    "benchmark.eval_only=[]",
    "benchmark.train_per_task=16",
    "benchmark.eval_per_task=4",
    "benchmark.base.tasks=[describe,arithmetic]",
    "benchmark.base.samples_per_task=200",
    "benchmark.base.train.epochs=2",
    "train.epochs=1",
    "threads=1",
]
SMALL_EXAMPLE_FILES = ["--train", "16", "--eval", "6"]
SMALL_POOL = ["pool.budget=8"]
SMALL_LAMP = ["pool.selector={name: lamp, k_grid: [2, 3]}"]


@dataclass
class Fence:
    """A fenced code block of the guide: its language and its lines (fences excluded)."""

    language: str
    start: int  # line index of the opening fence
    end: int  # line index of the closing fence
    lines: list[str]


@dataclass
class Step:
    """A ``bash`` block of the guide, its commands, and the block that quotes their output (if any)."""

    block: Fence
    commands: list[str]
    output: Fence | None


@dataclass
class Ran:
    """One command as the guide writes it, what was run for it, and what it printed."""

    command: str
    argv: list[str]
    environment: dict[str, str]
    exit_code: int
    output: str
    seconds: float


@dataclass
class StepRun:
    """A step of the guide and the runs of its commands (fewer than its commands after a failure)."""

    step: Step
    runs: list[Ran] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(ran.output for ran in self.runs)

    @property
    def ok(self) -> bool:
        return len(self.runs) == len(self.step.commands) and all(ran.exit_code == 0 for ran in self.runs)


class QuoteError(Exception):
    """The guide cannot quote the run: a command failed, others ran, or a quoted line is not printed."""


def fences(text: str) -> list[Fence]:
    """The fenced code blocks of a Markdown text, in order."""
    lines = text.splitlines()
    blocks, start, language = [], None, ""
    for index, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if start is None:
            start, language = index, line[3:].strip()
        else:
            blocks.append(Fence(language, start, index, lines[start + 1 : index]))
            start = None
    return blocks


def commands(lines: list[str]) -> list[str]:
    """The shell commands of a ``bash`` block: ``\\``-continued lines joined, comment lines dropped."""
    result, pending = [], ""
    for line in lines:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line
        if line.endswith("\\"):
            pending = pending[:-1]
            continue
        result.append(pending.strip())
        pending = ""
    if pending:
        result.append(pending.strip())
    return result


def steps(text: str) -> list[Step]:
    """Every ``bash`` block of the guide, with the plain block that follows it (only blank lines between)."""
    blocks = fences(text)
    lines = text.splitlines()
    found = []
    for index, block in enumerate(blocks):
        if block.language != "bash":
            continue
        after = blocks[index + 1] if index + 1 < len(blocks) else None
        quoted = (
            after is not None
            and after.language == ""
            and all(not line.strip() for line in lines[block.end + 1 : after.start])
        )
        found.append(Step(block, commands(block.lines), after if quoted else None))
    return found


def form(line: str) -> str:
    """What a printed line says once numbers, runs of spaces and the lengths of rules are set aside."""
    line = re.sub(r"-?\d+(?:[.,]\d+)*", "#", line.strip())
    line = re.sub(r"([━─═])\1+", r"\1", line)
    return " ".join(line.split())


def quote(quoted: list[str], printed: str) -> list[str]:
    """The quoted lines replaced, in order, by the printed lines of the same form.

    Raises:
        QuoteError: A quoted line has no printed line of its form after the previous one's.
    """
    lines = [line.rstrip() for line in printed.splitlines()]
    result, cursor = [], 0
    for line in quoted:
        if line.strip() == ELISION:
            result.append(line)
            continue
        wanted = form(line)
        match = next((i for i in range(cursor, len(lines)) if form(lines[i]) == wanted), None)
        if match is None:
            raise QuoteError(f"no printed line (after the previous quoted one) has the form of {line.strip()!r}")
        result.append(lines[match])
        cursor = match + 1
    return result


def small_overrides(tokens: list[str]) -> tuple[list[str], dict[str, str]]:
    """The arguments (and environment) ``--small`` adds to one command, by what it runs."""
    if tokens[:2] == ["make", "run"]:
        return [], {"ARGS": " ".join(shlex.quote(value) for value in SMALL_DEFAULT_RUN)}
    if len(tokens) > 1 and tokens[1].endswith("write_example_stream.py"):
        return SMALL_EXAMPLE_FILES, {}
    if tokens[:1] != [MCIT] or len(tokens) < 2:
        return [], {}
    if tokens[1] == "run":
        extra = list(SMALL_TRAINING)
        if "scenario=pool" in tokens:
            extra += SMALL_POOL + (SMALL_LAMP if "pool.selector=lamp" in tokens else [])
        return extra, {}
    if tokens[1] == "eval":
        return ["eval.batch_size=16", "threads=1"], {}
    return [], {}


def prepare(directory: Path, venv: Path) -> Path:
    """Make ``directory`` look like a clone for the guide's commands: links to the repository's files and venv.

    The venv is linked entry by entry into a ``.venv`` of the directory's own, which gets a
    fresh ``.installed`` stamp so that ``make run`` runs rather than reinstalls.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = directory / name
        if not link.exists():
            link.symlink_to(REPO / name)
    shim = directory / ".venv"
    shim.mkdir(exist_ok=True)
    for entry in venv.iterdir():
        if not entry.name.startswith(".") and not (shim / entry.name).exists():
            (shim / entry.name).symlink_to(entry)
    (shim / ".installed").touch()
    return directory


def _in_process(argv: list[str], directory: Path) -> tuple[int, str]:
    """``mcit ARGV`` through the CLI in this process, from ``directory``."""
    from typer.testing import CliRunner

    from mcit.cli import app

    before = Path.cwd()
    os.chdir(directory)
    try:
        result = CliRunner().invoke(app, argv, prog_name="mcit")
    finally:
        os.chdir(before)
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        output += "".join(traceback.format_exception(*result.exc_info))
    return result.exit_code, output


#: An outer make's variables (``make test`` runs this guide): a reader's shell has none of them.
OUTER_MAKE = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")


def _shell(text: str, directory: Path, environment: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", text],
        check=False,
        cwd=directory,
        env={**{k: v for k, v in os.environ.items() if k not in OUTER_MAKE}, **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return done.returncode, done.stdout


def run_command(command: str, directory: Path, small: bool, in_process: bool) -> Ran:
    """Run one of the guide's commands in ``directory`` (with ``--small``'s overrides when asked)."""
    tokens = shlex.split(command, comments=True)
    extra, environment = small_overrides(tokens) if small else ([], {})
    argv = tokens + extra
    start = time.perf_counter()
    if in_process and tokens[:1] == [MCIT]:
        code, output = _in_process(argv[1:], directory)
    elif in_process and tokens[:1] == ["make"]:
        code, output = _make_in_process(argv, directory, environment)
    else:
        code, output = _shell(shlex.join(argv) if extra else command, directory, environment)
    return Ran(command, argv, environment, code, output, time.perf_counter() - start)


def _make_in_process(argv: list[str], directory: Path, environment: dict[str, str]) -> tuple[int, str]:
    """A ``make`` target's recipe lines, as ``make -n`` expands them, each run like a command of the guide."""
    # --no-print-directory: under an outer make (``make test``), make would list "make[1]: Entering ..." lines too
    code, listing = _shell(shlex.join([*argv[:1], "-n", "--no-print-directory", *argv[1:]]), directory, environment)
    if code != 0:
        return code, listing
    output = ""
    for line in listing.splitlines():
        ran = run_command(line, directory, small=False, in_process=True)
        output += ran.output
        if ran.exit_code != 0:
            return ran.exit_code, output
    return 0, output


def run_guide(
    directory: Path,
    *,
    small: bool = False,
    in_process: bool = False,
    venv: Path = REPO / ".venv",
    text: str | None = None,
    on_command: Callable[[Ran], None] | None = None,
) -> list[StepRun]:
    """Run every command of the guide's ``bash`` blocks in order; stop at the first that fails.

    Args:
        text: The guide (default: read from docs/own-model-and-data.md).

    Returns:
        One :class:`StepRun` per ``bash`` block (those after a failure hold no runs).
    """
    prepare(directory, venv)
    results = [StepRun(step) for step in steps(GUIDE.read_text() if text is None else text)]
    for result in results:
        for command in result.step.commands:
            ran = run_command(command, directory, small, in_process)
            result.runs.append(ran)
            if on_command is not None:
                on_command(ran)
            if ran.exit_code != 0:
                return results
    return results


def transcript(ran: Ran) -> str:
    """The command as it ran (the guide's text, then what ``--small`` added) and what it printed."""
    extra = ran.argv[len(shlex.split(ran.command, comments=True)) :]
    setting = "".join(f'{key}="{value}" ' for key, value in ran.environment.items())
    return f"$ {setting}{ran.command}{' ' + shlex.join(extra) if extra else ''}\n{ran.output}"


def machine() -> str:
    """The machine and software the figures were printed on, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, torch {version('torch')}"


def save_runs(path: Path, results: list[StepRun], on: str) -> None:
    """Write what every command printed, and the machine it ran ``on``, to ``path`` (JSON)."""
    runs = [vars(ran) for result in results for ran in result.runs]
    path.write_text(json.dumps({"machine": on, "runs": runs}, indent=1, ensure_ascii=False))


def load_runs(path: Path, text: str) -> tuple[list[StepRun], str]:
    """The guide's steps with the runs :func:`save_runs` wrote, and the machine they ran on.

    Raises:
        QuoteError: The guide's commands are not those that ran.
    """
    saved = json.loads(path.read_text())
    runs = iter(Ran(**ran) for ran in saved["runs"])
    results = []
    for step in steps(text):
        result = StepRun(step, [ran for _, ran in zip(step.commands, runs)])
        ran_words = [shlex.split(ran.command, comments=True) for ran in result.runs]
        if ran_words != [shlex.split(command, comments=True) for command in step.commands[: len(result.runs)]]:
            raise QuoteError(f"{path} holds other commands than the guide's {step.commands}; run them again")
        results.append(result)
    return results, saved["machine"]


def refreshed(text: str, results: list[StepRun], on: str) -> str:
    """The guide with every quoted output replaced by the lines this run printed, and the machine (``on``).

    Raises:
        QuoteError: A command failed, or a quoted line has no printed line of its form.
    """
    for result in results:
        if not result.ok:
            stopped = result.runs[-1].command if result.runs else result.step.commands[0]
            raise QuoteError(f"stopped at `{stopped}`: it failed or an earlier command did")
    lines = text.splitlines()
    for result in sorted(results, key=lambda r: r.step.block.start, reverse=True):  # from the end: indices hold
        fence = result.step.output
        if fence is not None:
            try:
                lines[fence.start + 1 : fence.end] = quote(fence.lines, result.output)
            except QuoteError as error:
                raise QuoteError(f"the output of `{result.step.commands[-1]}`: {error}") from None
    text = "\n".join(lines) + "\n"
    return MACHINE_MARK.sub(lambda m: m.group(1) + on + m.group(3), text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a new temporary one)")
    parser.add_argument("--write", action="store_true", help="copy the printed lines into the guide")
    parser.add_argument("--small", action="store_true", help="shrink each command's work (as the test does)")
    parser.add_argument("--in-process", action="store_true", help="run mcit commands in this process")
    parser.add_argument("--quote-from", type=Path, metavar="DIR", help="quote the run saved in DIR; run nothing")
    args = parser.parse_args()
    if args.write and args.small:
        parser.error("--write quotes the guide's commands as written; leave out --small")
    text = GUIDE.read_text()
    try:
        if args.quote_from is not None:
            results, on = load_runs(args.quote_from / "guide-run.json", text)
        else:
            results, on = run_and_save(args.dir, text, args.small, args.in_process)
        if GUIDE.read_text() != text:
            raise QuoteError(f"{GUIDE.name} changed while its commands ran; run again")
        new = refreshed(text, results, on)
    except QuoteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.write and new != text:
        GUIDE.write_text(new)
        print(f"updated {GUIDE.relative_to(REPO)}")
    else:
        change = "match" if new == text else "have new values (--write copies them)"
        print(f"every command exited 0; the quoted lines {change}")
    return 0


def run_and_save(directory: Path | None, text: str, small: bool, in_process: bool) -> tuple[list[StepRun], str]:
    """Run the guide (printing each command and its output) and save the run in the scratch directory."""
    directory = directory or Path(tempfile.mkdtemp(prefix="mcit-guide-"))
    print(f"scratch directory: {directory}", flush=True)
    with open(prepare(directory, REPO / ".venv") / "guide-output.txt", "w") as log:

        def show(ran: Ran) -> None:
            shown = f"{transcript(ran)}[exit {ran.exit_code}, {ran.seconds:.1f} s]\n"
            log.write(shown)
            log.flush()
            print(shown, flush=True)

        results = run_guide(directory, small=small, in_process=in_process, text=text, on_command=show)
    on = machine()
    save_runs(directory / "guide-run.json", results, on)
    return results, on


if __name__ == "__main__":
    sys.exit(main())
