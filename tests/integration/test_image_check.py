"""`mcit data check --model`: a tiny model trained briefly, scored with real, blank and shuffled images.

The model learns two things from one training file: the embedded ``color`` task (the answer
is in the image) and ``echo`` (the answer is written in the question, beside an unrelated
image). The evaluation sets: ``color`` (needs its image), ``echo`` (answerable without
looking), ``red`` (colour questions whose answer is always "red": any image of the set gives
it, not the sample's own), ``single`` (one sample: nothing to shuffle) and ``arithmetic``
(text only).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import one_line_error
from mcit.atomic_files import atomic_write_json
from mcit.cli import app
from mcit.config import load_config
from mcit.data.synthetic.render import COLORS
from mcit.data.synthetic.tasks import TASKS
from mcit.image_reliance import check_model_images
from mcit.report import write_report
from mcit.runner import Runner

EVAL = 24
TRAIN = ["train.epochs=6", "train.lr=1e-3", "train.batch_size=16", "eval.batch_size=32", "threads=1"]  # color: 100% (seeds 0-2)


def write_stream(root: Path) -> Path:
    """The files stream above: ``root/stream.yaml``, its JSON files and PNGs."""
    (root / "img").mkdir(parents=True)
    rng = random.Random(0)
    color, arithmetic = TASKS.get("color"), TASKS.get("arithmetic")

    def image(sample, name: str | None = None) -> str:
        path = f"img/{name or sample.id}.png"
        sample.image.save(root / path)
        return path

    def echo(split: str, n: int) -> list[tuple[str, str, str]]:  # (image, question, answer): the image shows some other colour
        words = [rng.choice(sorted(COLORS)) for _ in range(n)]
        pictures = color.generate(n, 0, f"echo-{split}")
        return [(image(p, f"echo-{split}-{i}"), f"The word is {w}. Say the word.", w) for i, (p, w) in enumerate(zip(pictures, words))]

    train = [(image(s), s.prompt, s.answer) for s in color.generate(400, 0, "train")] + echo("train", 200)
    records = [{"id": f"t{i}", "image": path, "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]}
               for i, (path, q, a) in enumerate(train)]  # fmt: skip
    (root / "train.json").write_text(json.dumps(records))
    reds = [s for s in color.generate(20 * EVAL, 0, "red") if s.answer == "red"][:EVAL]
    sets = {
        "color": [(image(s), s.prompt, s.answer) for s in color.generate(EVAL, 0, "eval")],
        "echo": echo("eval", EVAL),
        "red": [(image(s), s.prompt, s.answer) for s in reds],
        "single": [(image(s), s.prompt, s.answer) for s in color.generate(1, 0, "single")],
    }
    for name, items in sets.items():
        (root / f"{name}.json").write_text(json.dumps([{"question_id": f"{name}{i}", "image": p, "question": q, "answers": [a]} for i, (p, q, a) in enumerate(items)]))
    (root / "arithmetic.json").write_text(json.dumps([{"question_id": s.id, "question": s.prompt, "answers": [s.answer]} for s in arithmetic.generate(6, 0, "eval")]))
    config = {"benchmark": {"name": "files", "tasks": [{"name": "color", "train": "train.json", "eval": "color.json"}],
                            "eval_only": [{"name": name, "eval": f"{name}.json"} for name in ("echo", "red", "single", "arithmetic")]}}  # fmt: skip
    (root / "stream.yaml").write_text(yaml.safe_dump(config))
    return root / "stream.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(stream.yaml, the run directory); the trained model is the run's ``checkpoints/task-001/model``."""
    root = tmp_path_factory.mktemp("image-check")
    stream = write_stream(root / "data")
    results = Runner(load_config(stream, TRAIN), root / "run").run()
    assert results["rows"][0]["scores"]["color"] >= 0.8, "color was not learned: the check would have nothing to find"
    return stream, root / "run"


def model_of(run: Path) -> Path:
    return run / "checkpoints" / "task-001" / "model"


def check(*args: str):
    return CliRunner().invoke(app, ["data", "check", *map(str, args)])


@pytest.fixture(scope="module")
def checked(trained) -> dict:
    stream, run = trained
    return check_model_images(load_config(stream, ["threads=1"]), str(model_of(run)))


@pytest.fixture(scope="module")
def result(checked) -> dict:
    return {t["task"]: t for t in checked["tasks"]}


def test_a_task_that_needs_its_image_loses_its_score_without_it(result):
    color = result["color"]
    assert color["real"] >= 0.8
    assert color["real"] - color["shuffled"] >= 0.3 and color["real"] - color["blank"] >= 0.3
    assert color["kept"] == 0 and color["verdict"] == "needs image" and not color["flagged"]


def test_a_task_answered_from_the_question_is_flagged(result):
    echo = result["echo"]
    assert echo["real"] >= 0.8 and echo["flagged"] and echo["verdict"] == "no image needed"
    assert echo["explanation"].endswith("the model answers this set without looking, so it measures little of vision-language learning")


def test_a_set_whose_answer_any_of_its_images_gives_is_flagged(result):
    red = result["red"]
    assert red["real"] - red["shuffled"] < 0.05 <= red["real"] - red["blank"]
    assert red["flagged"] and red["verdict"] == "own image not needed"


def test_a_set_of_one_and_a_text_only_set(result):
    single, arithmetic = result["single"], result["arithmetic"]
    assert single["shuffled"] is None and single["kept"] == 1 and single["blank"] is not None
    assert arithmetic["verdict"] == "text-only" and arithmetic["real"] is None and not arithmetic["flagged"]


def test_cli_prints_the_table_and_writes_the_check_into_the_run_directory(trained):
    stream, run = trained
    out = check(stream, "threads=1", "--model", model_of(run), "--out", run)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│"))}
    assert rows["echo"] == ["100.0", "100.0", "100.0", "0.0", "no image needed"] and rows["color"][-1] == "", out.output
    header = next(line for line in lines if " real " in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == ["task", "real", "blank", "shuffled", "drop", "flag"]
    assert "flag: task 'echo' scores" in " ".join(out.output.split())
    saved = json.loads((run / "image_check.json").read_text())
    flagged = sum(t["flagged"] for t in saved["tasks"])
    assert f"{flagged} of 5 tasks flagged" in out.output and f"image check: {run / 'image_check.json'}" in " ".join(out.output.split())
    assert {t["task"]: t["verdict"] for t in saved["tasks"]}["echo"] == "no image needed"
    assert saved["blank"] == {"rgb": [123, 117, 104], "from": "the processor's image_mean"}


def test_the_report_shows_the_check_with_its_flags(trained, checked, tmp_path):
    _, run = trained
    atomic_write_json(run / "image_check.json", checked)
    page = write_report([run], tmp_path / "report").read_text()
    section = page[page.index("<h2>Is the image needed?</h2>") : page.index("<h2>Exports</h2>")]
    assert "<tr><td>echo</td>" in section and "<td>no image needed</td>" in section
    assert '<p class="note">task &#x27;echo&#x27; scores' in section and "Not columns of this run" not in section
    (run / "image_check.json").unlink()
    assert "Is the image needed?" not in write_report([run], tmp_path / "plain").read_text()


def test_a_threshold_above_a_tasks_drop_flags_it(trained, result, tmp_path):
    stream, run = trained
    color = result["color"]
    points = 100 * min(color["real"] - color["blank"], color["real"] - color["shuffled"]) + 1
    out = check(stream, "threads=1", "--model", model_of(run), "--image-threshold", f"{points:g}", "--out", tmp_path / "check.json")
    assert out.exit_code == 0, out.output
    saved = {t["task"]: t for t in json.loads((tmp_path / "check.json").read_text())["tasks"]}
    assert saved["color"]["flagged"] and not saved["arithmetic"]["flagged"]  # a text-only set is never flagged


def test_bad_options_are_one_line_before_any_scoring(trained, tmp_path):
    stream, run = trained
    assert "give --model too" in one_line_error(check(stream, "--out", tmp_path / "x.json"))
    assert "give points between 0 and 100" in one_line_error(check(stream, "--model", model_of(run), "--image-threshold", "150"))
    assert "no such directory" in one_line_error(check(stream, "--model", model_of(run), "--out", tmp_path / "nope" / "x.json"))
    assert "is generated, not read from files" in one_line_error(check("benchmark.eval_only=[]"))


def test_a_generated_benchmark_runs_only_the_image_check(tmp_path):
    out = check("benchmark.tasks=[color]", "benchmark.eval_only=[arithmetic]", "benchmark.eval_per_task=4", "threads=1", "--model", "tiny")
    assert out.exit_code == 0, out.output
    assert "only the image check runs" in out.output
    assert "(too low to tell)" in out.output and "(text-only)" in out.output  # an untrained model scores nothing
