"""Small copies of the field's released evaluation and training files, in the layouts they ship.

Each writer puts a few records under ``root`` exactly as the released file lays them out
(field names, wrappers, id numbering, JSON Lines under ``.json``, images named from ids or
stored as bytes) and returns what a test needs to check the join: the expected answers by
record. The layouts follow the public files:

- POPE's ``coco_pope_random.json`` (JSON Lines, ``label``, ids from 1) and LLaVA's
  ``llava_pope_test.jsonl`` (ids from 10000001, the instruction appended to the question);
- VQAv2's ``v2_OpenEnded_mscoco_val2014_questions.json`` (``{"questions": [...]}``) and
  ``v2_mscoco_val2014_annotations.json`` (``{"annotations": [...]}``), images
  ``COCO_val2014_<12-digit id>.jpg``;
- GQA's ``*_balanced_questions.json`` (a dict keyed by question id, ``imageId``);
- TextVQA's ``TextVQA_0.5.1_val.json`` (``{"data": [...]}``, ten answers) and LLaVA's
  ``llava_textvqa_val_v051_ocr.jsonl`` (the image id as ``question_id``, OCR tokens and the
  instruction after the question);
- the lmms-lab evaluation sets as parquet files and ``save_to_disk`` folders (images as bytes;
  MME's ``question_id`` repeats, one per question of an image);
- LLaVA-665K (``llava_v1_5_mix665k.json``, images ``coco/train2017/...`` relative to an image
  folder, text-only records among them).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

INSTRUCTION = "Answer the question using a single word or phrase."
OBJECTS = ("dog", "car", "person", "snowboard")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40))


def image(path: Path, number: int) -> Path:
    """A small JPEG whose colour depends on ``number``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40 + 8 * (number % 3), 32), COLOURS[number % len(COLOURS)]).save(path, format="JPEG")
    return path


def image_bytes(number: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (36, 28), COLOURS[number % len(COLOURS)]).save(buffer, format="PNG")
    return buffer.getvalue()


def _json_lines(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def coco_val_name(image_id: int) -> str:
    return f"COCO_val2014_{image_id:012d}.jpg"


def write_pope(root: Path, questions: int = 8, unlabelled: int = 2) -> list[str]:
    """POPE's random-subset labels and LLaVA's question file for them; returns LLaVA's records' answers.

    The labels number from 1; LLaVA's questions from 10000001, with the instruction appended.
    Every image gets several questions and every question is asked of several images, so only
    (image, question) identifies one. The last ``unlabelled`` of LLaVA's questions have no label.
    """
    labels, asked, answers = [], [], []
    for i in range(questions):
        image_id = 100 + i % 3
        image(root / "coco" / "val2014" / coco_val_name(image_id), image_id)
        question = f"Is there a {OBJECTS[i % len(OBJECTS)]} in the image?"
        label = "yes" if (i * 7) % 3 else "no"
        labels.append({"question_id": i + 1, "image": coco_val_name(image_id), "text": question, "label": label})
        asked.append({"question_id": 10000001 + i, "image": coco_val_name(image_id), "text": f"{question}\n{INSTRUCTION}", "category": "random"})
        answers.append(label)
    for k in range(unlabelled):
        asked.append({"question_id": 10000001 + questions + k, "image": coco_val_name(100), "text": f"Is there a zebra {k} in the image?\n{INSTRUCTION}", "category": "random"})
    _json_lines(root / "pope" / "output" / "coco" / "coco_pope_random.json", labels)  # JSON Lines, named .json
    _json_lines(root / "llava" / "eval" / "pope" / "llava_pope_test.jsonl", asked)
    return answers


def write_vqav2(root: Path, questions: int = 6) -> list[list[str]]:
    """VQAv2's official val questions and annotations; returns each question's ten answers."""
    qs, annotations, answers = [], [], []
    for i in range(questions):
        image_id = 262148 + i // 2
        image(root / "coco" / "val2014" / coco_val_name(image_id), image_id)
        question_id = image_id * 1000 + i % 2
        ten = ["red"] * 6 + ["dark red"] * 3 + ["maroon"] if i % 2 else ["2"] * 8 + ["two"] * 2
        qs.append({"image_id": image_id, "question": f"What is shown {i}?", "question_id": question_id})
        annotations.append({
            "question_type": "what is", "multiple_choice_answer": ten[0], "image_id": image_id, "answer_type": "other",
            "question_id": question_id, "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(ten)],
        })  # fmt: skip
        answers.append(ten)
    meta = {"info": {"description": "VQA v2"}, "license": {"name": "CC"}, "data_subtype": "val2014"}
    _json(root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json", {**meta, "task_type": "Open-Ended", "data_type": "mscoco", "questions": qs})
    _json(root / "vqav2" / "v2_mscoco_val2014_annotations.json", {**meta, "annotations": annotations})
    return answers


def write_gqa(root: Path, split: str, questions: int = 6) -> list[str]:
    """GQA's balanced question file of ``split`` (a dict keyed by question id); returns the answers."""
    data, answers = {}, []
    for i in range(questions):
        image_id = f"n{161313 + i // 2}"
        image(root / "gqa" / "images" / f"{image_id}.jpg", i)
        answer = ("yes", "left", "table")[i % 3]
        data[str(20968379 + i)] = {
            "semantic": [{"operation": "select", "dependencies": [], "argument": "table (1)"}], "entailed": [], "equivalent": [str(20968379 + i)],
            "question": f"Is the table on the left {i}?", "imageId": image_id, "isBalanced": True, "groups": {"global": None, "local": "10c-table"},
            "answer": answer, "semanticStr": "select: table", "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
            "types": {"structural": "verify", "semantic": "rel", "detailed": "relS"}, "fullAnswer": f"The answer is {answer}.",
        }  # fmt: skip
        answers.append(answer)
    _json(root / "gqa" / "questions" / f"{split}_balanced_questions.json", data)
    return answers


def write_textvqa(root: Path, images: int = 3, per_image: int = 2) -> list[list[str]]:
    """TextVQA's official val file and LLaVA's question file for it; returns the ten answers of each question."""
    data, asked, answers = [], [], []
    for n in range(images):
        image_id = f"003a8ae2ef43b9{n:02x}"
        image(root / "textvqa" / "train_images" / f"{image_id}.jpg", n)
        for k in range(per_image):
            question = f"what is written on sign {k}?"
            ten = [f"word{n}{k}"] * 9 + ["other"]
            data.append({
                "question": question, "image_id": image_id, "image_classes": ["Sign"], "flickr_original_url": "https://example.org/x.jpg",
                "flickr_300k_url": "https://example.org/y.jpg", "image_width": 1024, "image_height": 664, "answers": ten,
                "question_tokens": question.split(), "question_id": 34602 + len(data), "set_name": "val",
            })  # fmt: skip
            # LLaVA's file: the image id as question_id (it repeats), OCR tokens and the instruction after the question.
            asked.append({"question_id": image_id, "image": f"{image_id}.jpg", "text": f"{question}\nReference OCR token: STOP, word{n}{k}\n{INSTRUCTION}", "category": "default"})
            answers.append(ten)
    _json(root / "textvqa" / "TextVQA_0.5.1_val.json", {"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1", "data": data})
    _json_lines(root / "llava" / "eval" / "textvqa" / "llava_textvqa_val_v051_ocr.jsonl", asked)
    return answers


def _hf_dataset(columns: dict):
    """A ``datasets.Dataset`` of ``columns`` whose ``image`` column is a ``datasets.Image`` feature (bytes inside)."""
    import datasets

    return datasets.Dataset.from_dict(columns).cast_column("image", datasets.Image())


def write_lmms_lab_parquet(root: Path, rows: int = 5) -> Path:
    """An lmms-lab evaluation set as one parquet file (images as bytes, ``answers`` lists)."""
    columns = {
        "question_id": [5000 + i for i in range(rows)], "question": [f"What word is on sign {i}?" for i in range(rows)],
        "answers": [[f"word{i}"] * 10 for i in range(rows)], "image_id": [f"img{i}" for i in range(rows)],
        "image": [{"bytes": image_bytes(i), "path": None} for i in range(rows)],
    }  # fmt: skip
    path = root / "lmms-lab" / "textvqa" / "data" / "validation-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    _hf_dataset(columns).to_parquet(str(path))
    return path


def write_lmms_lab_mme(root: Path, images: int = 3) -> Path:
    """lmms-lab's MME as a ``save_to_disk`` folder: two questions per image, ``question_id`` the image's name."""
    columns: dict[str, list] = {"question_id": [], "image": [], "question": [], "answer": [], "category": []}
    for n in range(images):
        for answer in ("Yes", "No"):
            columns["question_id"].append(f"code_reasoning/{n:04d}.png")
            columns["image"].append({"bytes": image_bytes(n), "path": None})
            columns["question"].append(f"Is the output {n} {answer.lower()}? Please answer yes or no.")
            columns["answer"].append(answer)
            columns["category"].append("code_reasoning")
    path = root / "lmms-lab" / "MME" / "test"
    _hf_dataset(columns).save_to_disk(str(path))
    return path


def write_llava_mix(root: Path, records: int = 8) -> Path:
    """LLaVA-665K's layout: ``coco/train2017/...`` paths relative to the image folder (here the root), text-only records among them."""
    data = []
    for i in range(records):
        record = {"id": f"{33471 + i:012d}", "model": ""}
        if i % 4 == 3:  # ShareGPT conversations carry no image
            record["conversations"] = [{"from": "human", "value": f"Say word {i}."}, {"from": "gpt", "value": f"word{i}"}]
        else:
            record["image"] = f"coco/train2017/{33471 + i:012d}.jpg"
            image(root / record["image"], i)
            record["conversations"] = [
                {"from": "human", "value": f"<image>\nWhat colour is it?\n{INSTRUCTION}"}, {"from": "gpt", "value": ("red", "green", "blue", "yellow")[i % 4]},
            ]  # fmt: skip
        data.append(record)
    return _json(root / "llava" / "llava_v1_5_mix665k.json", data)
