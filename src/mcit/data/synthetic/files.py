"""Write embedded-world tasks as data files a user would bring: LLaVA JSON, PNGs, a config.

:func:`write_example_stream` is what ``examples/write_example_stream.py`` runs and what the
"your own model and data" guide and the file-benchmark tests start from: training files as
LLaVA conversations (some multi-turn), evaluation files as question/answer records with
several accepted answers, images in nested folders, and a ``stream.yaml`` that runs them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from mcit.data.sample import Sample
from mcit.data.synthetic.tasks import TASKS


def _conversation(sample: Sample, images: str, again: str | None = None) -> dict:
    """The sample as a LLaVA record; with ``again``, a second turn asks that (same answer)."""
    marker = "<image>\n" if sample.image is not None else ""
    turns = [{"from": "human", "value": marker + sample.prompt}, {"from": "gpt", "value": sample.answer}]
    if again is not None:
        turns += [{"from": "human", "value": again}, {"from": "gpt", "value": sample.answer}]
    record = {"id": sample.id, "conversations": turns}
    if sample.image is not None:
        record["image"] = f"{images}/{sample.id}.png"
    return record


def _save_images(samples: list[Sample], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        if sample.image is not None:
            sample.image.save(folder / f"{sample.id}.png")


def write_example_stream(
    out: Path,
    tasks: tuple[str, ...] = ("color", "shape"),
    eval_only: tuple[str, ...] = ("arithmetic",),
    train_per_task: int = 200,
    eval_per_task: int = 50,
    seed: int = 0,
) -> Path:
    """Write ``out/<task>/{train,val}.json``, ``out/images/<task>/<split>/*.png`` and ``out/stream.yaml``.

    Every fourth training record of a visual task is a two-turn conversation: the same
    question asked again in another of the task's wordings (same image, same answer; both
    replies are trained). Evaluation records are
    question/answer records (``question_id``, ``image``, ``question``, ``answers``).

    Returns:
        The path of ``stream.yaml`` (benchmark ``files``; its root is ``out``).
    """
    out = Path(out)
    config_tasks, config_eval = [], []
    for name in (*tasks, *eval_only):
        spec = TASKS.get(name)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        entry = {"name": name, "eval": f"{name}/val.json", "scorer": "exact_norm", "max_new_tokens": spec.max_new_tokens}
        if name in tasks:
            train = spec.generate(train_per_task, seed, "train")
            _save_images(train, out / "images" / name / "train")
            records = []
            for i, sample in enumerate(train):
                others = [t for t in spec.templates if t != sample.prompt and "{" not in t]
                again = others[i % len(others)] if i % 4 == 3 and sample.image is not None and others else None
                records.append(_conversation(sample, f"../images/{name}/train", again))
            (folder / "train.json").write_text(json.dumps(records, indent=1))
            entry = {"name": name, "train": f"{name}/train.json", **{k: v for k, v in entry.items() if k != "name"}}
            config_tasks.append(entry)
        else:
            config_eval.append(entry)
        evaluation = spec.generate(eval_per_task, seed, "eval")
        _save_images(evaluation, out / "images" / name / "val")
        records = []
        for sample in evaluation:
            record = {"question_id": sample.id, "question": sample.prompt, "answers": [sample.answer]}
            if sample.image is not None:
                record["image"] = f"../images/{name}/val/{sample.id}.png"
            records.append(record)
        (folder / "val.json").write_text(json.dumps(records, indent=1))
    config = {"benchmark": {"name": "files", "tasks": config_tasks, "eval_only": config_eval}}
    path = out / "stream.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
