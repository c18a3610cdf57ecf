"""Small fake copies of the published streams' folder layouts, in the records' real formats.

For each file a published YAML names, write a few records in the layout the stream ships
(see docs/published-streams.md): training files as LLaVA conversations, evaluation files as
question/answer records (``question_id``, ``image``, ``text``, and the answer under the
task's ``answer_key``), separate answer files (TextVQA's ten answers by question id, UCIT's
COCO caption references by position), and the images the records name. Answers take the form
the task's scorer reads (option letters, boxes, captions, numbers), so every scorer runs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image

WORDS = ("red", "blue", "cat", "dog", "stop", "two")
CAPTIONS = ("a dog runs on the grass", "a red car on a street", "two people ride bikes")


def _answer(scorer: str, rng: random.Random) -> str:
    if scorer == "mc":
        return rng.choice("ABCD")
    if scorer.startswith("grounding"):
        x, y = rng.choice((0.1, 0.2)), rng.choice((0.1, 0.3))
        return f"[{x:.2f}, {y:.2f}, {x + 0.5:.2f}, {y + 0.5:.2f}]"
    if scorer == "caption":
        return rng.choice(CAPTIONS)
    if scorer == "relaxed":
        return str(rng.randint(1, 90))
    return rng.choice(WORDS)


def _text_only(relative: str) -> bool:
    # lm-evaluation-harness tasks (Srivastava et al.'s language skills) have no image.
    return "text" in Path(relative).parts


def _write_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records), encoding="utf-8")


def _image(folder: Path, relative: str, rng: random.Random) -> str:
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (rng.choice((40, 64)), 48), tuple(rng.randrange(256) for _ in range(3))).save(target)
    return relative


def write_layout(root: Path, benchmark, records_per_file: int = 6, seed: int = 0) -> None:
    """Write every file ``benchmark`` (a validated config's benchmark, root unchecked) names under ``root``."""
    rng = random.Random(seed)
    for task in list(benchmark["tasks"]) + list(benchmark.get("eval_only") or []):
        name, scorer = task["name"], task.get("scorer", "exact_norm")
        for role in ("train", "eval"):
            relative = task.get(role)
            if relative is None:
                continue
            data_file = root / relative
            images = root / task["images"] if task.get("images") else data_file.parent
            records = []
            for i in range(records_per_file):
                answer = _answer(scorer, rng)
                image = None if _text_only(relative) else _image(images, f"{name}_images/{role}/{i}.png", rng)
                marker = "" if image is None else "<image>\n"
                if role == "train":
                    record = {"id": f"{name}-{i}", "conversations": [
                        {"from": "human", "value": f"{marker}Question {i} about {name}?"}, {"from": "gpt", "value": answer},
                    ]}  # fmt: skip
                else:
                    record = {"question_id": 1000 + i, "text": f"Question {i} about {name}?", task.get("answer_key", "answer"): answer}
                if image is not None:
                    record["image"] = image
                records.append(record)
            _write_records(data_file, records)
            if role == "eval" and task.get("answers_file"):
                _write_answers(root / task["answers_file"], task.get("answers_format", "by_question_id"), records, task)


def _write_answers(path: Path, layout: str, records: list[dict], task: dict) -> None:
    key = task.get("answer_key", "answer")
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "by_question_id":
        data = {"data": [{"question_id": r["question_id"], "answers": [r[key]] * 7 + ["other"] * 3} for r in records]}
    else:
        data = {"images": [{"id": i + 1} for i in range(len(records))],
                "annotations": [{"image_id": i + 1, "id": i + 1, "caption": r[key]} for i, r in enumerate(records)]}  # fmt: skip
    path.write_text(json.dumps(data), encoding="utf-8")
