"""The own-model guide's commands, as docs/own-model-and-data.md writes them, run in order on the files it writes.

docs/own_model_guide.py takes the commands from the guide, so a command edited there is the
command tested here; ``small=True`` adds overrides that shrink each command's work to
seconds (the guide's figures come from the full commands, ``own_model_guide.py --write``).
``mcit`` commands run in this process (one import of torch), the others (``make -n``,
``python examples/...``, ``sed``) in a shell, all from one scratch directory.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import largest_difference, one_line_error
from mcit.cli import app

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "own_model_guide.py"


def load_script():
    spec = importlib.util.spec_from_file_location("own_model_guide", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


guide = load_script()
TEXT = guide.GUIDE.read_text()


def words(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def mcit_commands(subcommand: str) -> list[list[str]]:
    """The guide's ``.venv/bin/mcit SUBCOMMAND ...`` commands, as argument lists."""
    found = [words(command) for step in guide.steps(TEXT) for command in step.commands]
    return [tokens for tokens in found if tokens[:2] == [guide.MCIT, subcommand]]


def option(tokens: list[str], name: str) -> str | None:
    return tokens[tokens.index(name) + 1] if name in tokens else None


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The scratch directory and every step of the guide, run once for the module."""
    directory = tmp_path_factory.mktemp("guide")
    return directory, guide.run_guide(directory, small=True, in_process=True, venv=Path(sys.prefix))


def test_the_guide_runs_make_run_then_the_cli_commands_it_documents():
    commands = [command for step in guide.steps(TEXT) for command in step.commands]
    assert commands[0].startswith("make run")
    assert all(mcit_commands(name) for name in ("validate", "run", "export", "eval"))


def test_every_command_of_the_guide_exits_0(ran):
    _, steps = ran
    for step in steps:
        for done in step.runs:
            assert done.exit_code == 0, f"{done.command}\n{done.output[-3000:]}"
        assert len(step.runs) == len(step.step.commands), f"not run: {step.step.commands[len(step.runs) :]}"


RESULT_COMMANDS = [[guide.MCIT, "run"], [guide.MCIT, "export"], [guide.MCIT, "eval"]]


def test_every_result_the_guide_quotes_is_printed_in_that_form(ran):
    """Each quoted line has a printed line of the same form, in order: tables, rows, metrics and messages."""
    _, steps = ran
    for step in steps:
        shows_results = any(words(command)[:2] in RESULT_COMMANDS for command in step.step.commands)
        assert step.step.output is not None or not shows_results, f"no quoted output after {step.step.commands}"
        if step.step.output is not None:
            guide.quote(step.step.output.lines, step.output)


def test_the_files_the_guide_lists_are_written(ran):
    directory, _ = ran
    listing = next(
        fence
        for fence in guide.fences(TEXT)
        if fence.language == "" and fence.lines and all(line.startswith("mystream/") for line in fence.lines)
    )
    for line in listing.lines:
        pattern = line.split()[0]
        if "..." not in pattern:
            glob = pattern.replace("<task>", "*").replace("<split>", "*")
            assert list(directory.glob(glob)), f"the guide lists {pattern}; nothing there"


def test_the_config_the_guide_shows_is_the_one_written(ran):
    directory, _ = ran
    shown = next(yaml.safe_load("\n".join(f.lines)) for f in guide.fences(TEXT) if f.language == "yaml")["benchmark"]
    written = yaml.safe_load((directory / "mystream" / "stream.yaml").read_text())["benchmark"]
    assert shown["name"] == written["name"]
    for part in ("tasks", "eval_only"):
        assert [task["name"] for task in shown[part]] == [task["name"] for task in written[part]]
        for guide_task, task in zip(shown[part], written[part]):
            assert guide_task.items() <= task.items(), (guide_task, task)


def test_exports_are_a_plain_model_with_merge_and_the_adapter_of_the_task_asked_for(ran):
    from transformers import AutoModelForImageTextToText

    directory, _ = ran
    exports = mcit_commands("export")
    assert any("--merge" in tokens for tokens in exports) and any("--task" in tokens for tokens in exports)
    for tokens in exports:
        out = directory / option(tokens, "--out")
        if "--merge" in tokens:
            assert not (out / "adapter_config.json").exists()
            AutoModelForImageTextToText.from_pretrained(out)
        else:  # the guide's LoRA run: its adapter (and the projector beside it), as the task's checkpoint holds it
            run_dir = directory / tokens[2]
            checkpoint = run_dir / "checkpoints" / f"task-{int(option(tokens, '--task')):03d}" / "adapter"
            for name in ("adapter_model.safetensors", "non_lora_trainables.safetensors"):
                exported, kept = load_file(out / name), load_file(checkpoint / name)
                assert exported.keys() == kept.keys()
                assert max(largest_difference(exported[key], kept[key]) for key in kept) == 0.0


def test_eval_of_the_merged_export_prints_the_last_row_of_its_run(ran):
    directory, steps = ran
    merged = {option(tokens, "--out"): tokens[2] for tokens in mcit_commands("export") if "--merge" in tokens}
    (evaluation,) = [tokens for tokens in mcit_commands("eval") if option(tokens, "--model") in merged]
    results = json.loads((directory / merged[option(evaluation, "--model")] / "results.json").read_text())
    last = results["rows"][-1]["scores"]
    printed = next(done.output for step in steps for done in step.runs if words(done.command) == evaluation)
    lines = [line for line in printed.splitlines() if line.startswith(("┃", "│"))]
    header = [cell.strip() for cell in lines[0].strip("┃").split("┃")]
    row = [cell.strip() for cell in lines[-1].strip("│").split("│")]
    assert header[1:] == list(last)
    assert [float(cell) for cell in row[1:]] == [round(100 * score, 1) for score in last.values()]


def test_the_error_the_guide_quotes_for_records_without_an_answer(ran, tmp_path, monkeypatch):
    """Two training records of shape with an empty answer: the guide's one line, and no run directory."""
    directory, _ = ran
    (quoted,) = [f.lines[0] for f in guide.fences(TEXT) if f.language == "" and f.lines[0].startswith("error: ")]
    shutil.copytree(directory / "mystream", tmp_path / "mystream")
    path = tmp_path / "mystream" / "shape" / "train.json"
    records = json.loads(path.read_text())
    for index in (5, 9):
        records[index]["conversations"][1]["value"] = ""
    path.write_text(json.dumps(records))
    monkeypatch.chdir(tmp_path)
    base = directory / "runs" / "embedded-seqft-seed0" / "base_model"
    result = CliRunner().invoke(app, ["run", "mystream/stream.yaml", f"model.name={base}", "--out", "runs/mystream"])
    folder = quoted.split()[1].split("/mystream/")[0]  # the message names the file by its absolute path
    assert one_line_error(result).replace(str(tmp_path.resolve()), folder) == quoted
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("quoted", "printed", "expected"),
    [
        (["│ color │  1.0 │"], "x\n│ color     │ 100.0 │\n", ["│ color     │ 100.0 │"]),
        (
            ["┃ a ┃ b ┃", "...", "│ m │ 2 │"],
            "┃ a  ┃ b ┃\n┡━━╇━┩\n│ n │ 1 │\n│ m │ 3 │",
            ["┃ a  ┃ b ┃", "...", "│ m │ 3 │"],
        ),
    ],
)
def test_a_quote_takes_the_printed_lines_of_the_quoted_form(quoted, printed, expected):
    assert guide.quote(quoted, printed) == expected


@pytest.mark.parametrize(
    ("quoted", "printed"),
    [
        (["│ colour │ 1.0 │"], "│ color │ 1.0 │"),  # a row renamed
        (["│ color │ 1.0 │"], "│ color │ 1.0 │ 2.0 │"),  # a column added
        (["│ b │ 1 │", "│ a │ 1 │"], "│ a │ 1 │\n│ b │ 1 │"),  # out of order
    ],
)
def test_a_quote_that_is_no_longer_printed_is_refused(quoted, printed):
    with pytest.raises(guide.QuoteError):
        guide.quote(quoted, printed)


def test_commands_join_continued_lines_and_leave_out_comments():
    block = ["# a comment", "make run   # trains", "", ".venv/bin/mcit run a \\", "    b --out c"]
    assert guide.commands(block) == ["make run   # trains", ".venv/bin/mcit run a     b --out c"]
