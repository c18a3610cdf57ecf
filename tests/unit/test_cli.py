"""Tests for the mcit command line: ls, validate, run's argument handling and user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from typer.testing import CliRunner

import mcit.runner
from mcit.cli import app, default_out, split_args
from mcit.config import RunConfig
from mcit.errors import UserError


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def one_line_error(result) -> str:
    """The run failed as a user error: exit 2, a single 'error:' line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


class StopRunner:
    """Stands in for mcit.runner.Runner: records what the CLI built, then stops with a user error."""

    seen: dict = {}

    def __init__(self, config, run_dir, progress=None, force=False, world=None):
        StopRunner.seen = {"config": config, "run_dir": run_dir, "force": force}
        raise UserError("stopped by the test")


@pytest.fixture
def stop_runner(monkeypatch):
    # cli.run sets these with os.environ.setdefault; pre-set them so the test leaves no trace.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    StopRunner.seen = {}
    monkeypatch.setattr(mcit.runner, "Runner", StopRunner)
    return StopRunner


# -- ls ------------------------------------------------------------------------------------------------


def test_ls_lists_registered_names(cli):
    result = cli.invoke(app, ["ls"])
    assert result.exit_code == 0, result.output
    for name in ("seqft", "er", "joint", "embedded", "exact_norm", "final_average_accuracy",
                 "color", "arithmetic"):
        assert name in result.output, name
    for title in ("methods", "benchmarks", "embedded tasks", "scorers", "metrics"):
        assert title in result.output


# -- validate --------------------------------------------------------------------------------------------


def test_validate_good_config(cli, tmp_path):
    path = write(tmp_path, "good.yaml", "seed: 4\nmethod: [{name: er, buffer_per_task: 5}]\ntrain: {lr: 0.0005}\n")
    result = cli.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output
    # the resolved config is printed as YAML and validates back
    printed = yaml.safe_load(result.stdout.split("ok:")[0])
    config = RunConfig.model_validate(printed)
    assert config.seed == 4 and config.method[0].options() == {"buffer_per_task": 5, "selector": "random", "capacity": 1000, "buffer_fraction": None}
    assert config.train.lr == pytest.approx(5e-4)


def test_validate_applies_overrides(cli, tmp_path):
    path = write(tmp_path, "good.yaml", "seed: 4\n")
    result = cli.invoke(app, ["validate", str(path), "seed=9", "method=[er,dgg]"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout.split("ok:")[0])
    assert printed["seed"] == 9
    assert [m["name"] for m in printed["method"]] == ["er", "dgg"]


def test_validate_prints_every_option_of_every_method_and_the_selector(cli, tmp_path):
    """The saved config says exactly what ran: each option with its resolved default."""
    from mcit.selection import SELECTORS
    from mcit.strategies import STRATEGIES

    path = write(tmp_path, "c.yaml", "method: [er, {name: dgg, alpha: 0.1}]\n")
    printed = yaml.safe_load(cli.invoke(app, ["validate", str(path)]).stdout.split("ok:")[0])
    er, dgg = printed["method"]
    assert set(er) == {"name", *STRATEGIES.get("er").options_class.model_fields}
    assert set(dgg) == {"name", *STRATEGIES.get("dgg").options_class.model_fields}
    assert er["buffer_per_task"] == 200 and dgg["alpha"] == 0.1 and dgg["norm"] == "global"
    pool = write(tmp_path, "p.yaml", "scenario: pool\npool: {selector: lamp}\n")
    selector = yaml.safe_load(cli.invoke(app, ["validate", str(pool)]).stdout.split("ok:")[0])["pool"]["selector"]
    assert set(selector) == {"name", *SELECTORS.get("lamp").options_class.model_fields}
    assert selector["dim"] == 8192 and selector["layer"] == "middle"


def test_validate_refuses_a_model_path_without_a_model(cli, tmp_path):
    path = write(tmp_path, "c.yaml", f"model: {{name: {tmp_path / 'empty'}}}\n")
    (tmp_path / "empty").mkdir()
    assert "empty" in one_line_error(cli.invoke(app, ["validate", str(path)]))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seed: 1\nthreads: 2\n  device: cpu\n", "line 3"),
        ("seed: 1\nbogus: 2\n", "bogus"),
        ("train:\n  lrr: 0.1\n", "train.lrr"),
        ("method: seqtf\n", "Did you mean 'seqft'"),
        ("method: [{name: er, bufer_per_task: 3}]\n", "bufer_per_task"),
        ("- just\n- a list\n", "mapping"),
        ("benchmark: {tasks: [color, color]}\n", "distinct"),
    ],
)
def test_validate_bad_config_exits_2_with_one_line(cli, tmp_path, text, expected):
    path = write(tmp_path, "bad.yaml", text)
    line = one_line_error(cli.invoke(app, ["validate", str(path)]))
    assert expected in line
    assert "bad.yaml" in line


def test_validate_bad_override(cli, tmp_path):
    path = write(tmp_path, "good.yaml", "seed: 1\n")
    line = one_line_error(cli.invoke(app, ["validate", str(path), "train.lr=abc"]))
    assert "train.lr" in line


def test_validate_missing_file(cli, tmp_path):
    line = one_line_error(cli.invoke(app, ["validate", str(tmp_path / "missing.yaml")]))
    assert "missing.yaml" in line


def test_validate_subprocess_bad_yaml_prints_one_line(tmp_path):
    # A long path makes the message wider than a default 80-column console: it must not wrap.
    folder = tmp_path / ("a-rather-long-directory-name-" * 3)
    folder.mkdir()
    bad = write(folder, "bad.yaml", "seed: 1\nmethod: seqtf\n")
    completed = subprocess.run(
        [sys.executable, "-m", "mcit", "validate", str(bad)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Did you mean 'seqft'" in lines[0] and str(bad) in lines[0]
    assert completed.stdout == ""


# -- run -----------------------------------------------------------------------------------------------------


def test_run_unknown_method(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    line = one_line_error(cli.invoke(app, ["run", "--method", "nosuchmethod", "--out", str(out)]))
    assert "Did you mean" in line or "Unknown method" in line
    assert "nosuchmethod" in line
    assert not out.exists()


def test_run_typo_in_method_suggests(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(cli.invoke(app, ["run", "--method", "er,jiont", "--out", str(tmp_path / "run")]))
    assert "Did you mean 'joint'" in line


def test_run_bad_override_creates_no_run_directory(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    line = one_line_error(cli.invoke(app, ["run", "train.batch_size=-1", "--out", str(out)]))
    assert "train.batch_size" in line
    assert not out.exists()
    assert not (tmp_path / "runs").exists()


def test_run_bad_config_file_creates_no_run_directory(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = write(tmp_path, "bad.yaml", "train: {epochs: 0}\n")
    line = one_line_error(cli.invoke(app, ["run", str(bad), "--out", str(tmp_path / "run")]))
    assert "train.epochs" in line and "bad.yaml" in line
    assert not (tmp_path / "run").exists()


def test_run_two_config_files_is_a_user_error(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(cli.invoke(app, ["run", "a.yaml", "b.yaml"]))
    assert "b.yaml" in line


class RecordingRunner:
    """Stands in for mcit.runner.Runner on a rank other than 0: records the world it got, returns nothing."""

    worlds: ClassVar[list] = []

    def __init__(self, config, run_dir, progress=None, force=False, world=None):
        RecordingRunner.worlds.append((world, progress))

    def run(self):
        return None


def test_run_on_a_rank_other_than_0_runs_and_prints_nothing(cli, tmp_path, monkeypatch, stop_runner):
    import mcit.distributed
    from mcit.distributed import World

    monkeypatch.setattr(mcit.distributed, "world_from_environment", lambda: World(rank=1, size=2))
    monkeypatch.setattr(mcit.runner, "Runner", RecordingRunner)
    RecordingRunner.worlds = []
    result = cli.invoke(app, ["run", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.output == "", "only rank 0 reports"
    assert RecordingRunner.worlds == [(World(rank=1, size=2), None)], "the runner got the rank's world and no progress bars"


def test_run_passes_config_and_out_to_the_runner(cli, tmp_path, monkeypatch, stop_runner):
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path, "good.yaml", "seed: 3\n")
    result = cli.invoke(app, ["run", str(good), "train.lr=0.002", "--method", "er,dgg", "--out", str(tmp_path / "r"), "--force"])
    assert "stopped by the test" in one_line_error(result)
    seen = stop_runner.seen
    assert seen["run_dir"] == tmp_path / "r"
    assert seen["force"] is True
    config = seen["config"]
    assert config.seed == 3 and config.train.lr == pytest.approx(0.002)
    assert [m.name for m in config.method] == ["er", "dgg"]


def test_run_default_out_is_deterministic(cli, tmp_path, monkeypatch, stop_runner):
    monkeypatch.chdir(tmp_path)
    one_line_error(cli.invoke(app, ["run", "seed=5", "--method", "er"]))
    assert stop_runner.seen["run_dir"] == Path("runs") / "embedded-er-seed5"
    assert default_out(RunConfig.model_validate({"method": ["er", "dgg"]})) == Path("runs/embedded-er+dgg-seed0")


def test_run_method_option_keeps_method_overrides(cli, tmp_path, monkeypatch, stop_runner):
    monkeypatch.chdir(tmp_path)
    one_line_error(cli.invoke(app, ["run", "--method", "er", "method.0.buffer_per_task=50", "--out", str(tmp_path / "r")]))
    method = stop_runner.seen["config"].method
    assert [m.name for m in method] == ["er"]
    assert method[0].options()["buffer_per_task"] == 50


def testsplit_args():
    assert split_args([]) == (None, [])
    assert split_args(["c.yaml", "a=1", "b.c=2"]) == (Path("c.yaml"), ["a=1", "b.c=2"])
    assert split_args(["a=1"]) == (None, ["a=1"])
    with pytest.raises(UserError, match="unexpected argument 'd.yaml'"):
        split_args(["c.yaml", "d.yaml"])


# -- text in square brackets is printed as written (rich markup would drop it) -------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["validate", "method=[ewcc]"], "override 'method=[ewcc]'"),
        (["validate", "model.trainable=[vision, nope]"], "override 'model.trainable=[vision, nope]'"),
        (["validate", "--method", "dgg"], "use [er, dgg] (configs/dgg.yaml)"),
        (["run", "--method", "dgg"], "use [er, dgg] (configs/dgg.yaml)"),
    ],
)
def test_errors_keep_bracketed_text(cli, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    assert expected in one_line_error(cli.invoke(app, args))


def flat(text: str) -> str:
    """Text with every run of whitespace as one space (help output is wrapped and indented)."""
    return " ".join(text.split())


def test_every_help_text_is_shown_as_written(cli):
    import typer.main

    group = typer.main.get_command(app)
    commands = [([name], command) for name, command in group.commands.items()]
    commands += [([name, sub], command) for name, parent in group.commands.items() for sub, command in getattr(parent, "commands", {}).items()]
    assert any(name == ["sweep"] for name, _ in commands) and any(name == ["data", "check"] for name, _ in commands)
    for name, command in commands:
        result = cli.invoke(app, [*name, "--help"])
        assert result.exit_code == 0, result.output
        shown = flat(result.output)
        for param in command.params:
            if getattr(param, "help", None):
                assert flat(param.help) in shown, (name, param.help)
    assert "a chain '[er, dgg]'" in flat(cli.invoke(app, ["sweep", "--help"]).output)
    assert "[CONFIG.yaml] [key=value ...]" in flat(cli.invoke(app, ["run", "--help"]).output)


class BracketRunner:
    """Stands in for mcit.runner.Runner: reports a message and stops with an error, both with brackets."""

    def __init__(self, config, run_dir, progress=None, force=False, world=None):
        self.progress = progress

    def run(self):
        self.progress.message("resuming after task 1/2 ([er, dgg] chain) in runs/[x]")
        raise UserError("task [count]: loss is nan at step 3")


def test_runner_messages_and_the_run_directory_keep_their_brackets(cli, tmp_path, monkeypatch, stop_runner):
    monkeypatch.setattr(mcit.runner, "Runner", BracketRunner)
    out = tmp_path / "[run]"
    result = cli.invoke(app, ["run", "--out", str(out)])
    assert "resuming after task 1/2 ([er, dgg] chain) in runs/[x]" in result.stdout
    assert f"run directory: {out}" in result.stdout
    assert "task [count]: loss is nan at step 3" in one_line_error(result)


def test_export_keeps_its_load_hint(cli, tmp_path, monkeypatch):
    import mcit.export

    monkeypatch.setattr(mcit.export, "export_run", lambda run_dir, out, task, merge: {"form": "model", "index": 1, "task": "count"})
    result = cli.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "model after task 2 (count): " in result.stdout
    assert "[load with AutoModelForImageTextToText.from_pretrained]" in result.stdout


# -- validate takes what run takes -------------------------------------------------------------------------------


def test_validate_takes_run_s_method_option_and_overrides(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["validate", "seed=3", "--method", "er,dgg", "method.0.buffer_per_task=50"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout.split("ok:")[0])
    assert printed["seed"] == 3 and [m["name"] for m in printed["method"]] == ["er", "dgg"]
    assert printed["method"][0]["buffer_per_task"] == 50
    assert "ok: seed=3 method.0.buffer_per_task=50 --method er,dgg is valid" in flat(result.stdout)
    assert f"run directory: {Path('runs') / 'embedded-er+dgg-seed3'} (new)" in result.stdout


def test_validate_refuses_what_run_would_refuse_in_the_run_directory(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 1\n", encoding="utf-8")
    line = one_line_error(cli.invoke(app, ["validate", "--method", "er", "--out", str(out)]))
    assert "holds a run with a different config" in line
    assert cli.invoke(app, ["validate", "--method", "er", "--out", str(out), "--force"]).exit_code == 0
    assert not (out / "results.json").exists() and sorted(p.name for p in out.iterdir()) == ["config.yaml"], "validate writes nothing"


def test_validate_with_no_argument_checks_the_default_run(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "ok: the default config is valid" in result.stdout


# -- Ctrl-C --------------------------------------------------------------------------------------------------------


def test_the_interrupted_message_names_the_last_committed_step():
    from mcit.run_setup import interrupted_message

    stream = {"scenario": "stream", "tasks": ["color", "count", "shape"], "rows": [{"after": "color"}, {"after": "count"}]}
    assert interrupted_message(stream) == "interrupted after task 2/3 (count); run the same command to resume"
    pool = {"scenario": "pool", "datasets": ["d1", "d2"], "rows": [{"after": "d1"}]}
    assert interrupted_message(pool) == "interrupted after step 1/2 (d1); run the same command to resume"
    assert interrupted_message(None) == "interrupted before the first task finished; run the same command to resume"


class InterruptedRunner:
    def __init__(self, config, run_dir, progress=None, force=False, world=None):
        pass

    def run(self):
        from mcit.run_setup import RunInterrupted

        raise RunInterrupted("interrupted after task 1/2 (color); run the same command to resume")


def test_ctrl_c_exits_130_saying_where_the_run_stopped(cli, tmp_path, monkeypatch, stop_runner):
    monkeypatch.setattr(mcit.runner, "Runner", InterruptedRunner)
    result = cli.invoke(app, ["run", "--out", str(tmp_path / "r")])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted after task 1/2 (color); run the same command to resume"
