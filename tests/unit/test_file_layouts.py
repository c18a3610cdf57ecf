"""Released files as they ship: layouts read by content, answers joined from their own files,
images named by templates or stored in Hugging Face datasets, one image folder per stream."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mcit.config import load_config
from mcit.data.answer_files import AnswerTable
from mcit.data.images import StoredImage, as_pil, image_size
from mcit.data.llava_json import LlavaDataset
from mcit.errors import UserError
from released_files import (
    COLOURS,
    INSTRUCTION,
    coco_val_name,
    image,
    write_gqa,
    write_lmms_lab_mme,
    write_lmms_lab_parquet,
    write_pope,
    write_textvqa,
    write_vqav2,
)

TEMPLATE = "{question}\n" + INSTRUCTION


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """Parquet files are converted into the datasets cache: keep it out of the home folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def one_line(call) -> str:
    with pytest.raises(UserError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# -- POPE: JSON Lines named .json, labels joined by image and question ------------------------


def test_pope_labels_load_as_an_eval_file_with_answer_key_label(tmp_path):
    answers = write_pope(tmp_path)
    labels = tmp_path / "pope" / "output" / "coco" / "coco_pope_random.json"
    dataset = LlavaDataset(labels, tmp_path / "coco" / "val2014", answer_key="label", template=TEMPLATE)
    assert dataset.layout == "JSON Lines" and [s.answer for s in dataset] == answers
    assert dataset[0].prompt == f"Is there a dog in the image?\n{INSTRUCTION}"
    assert dataset[0].images[0].path == str(tmp_path / "coco" / "val2014" / coco_val_name(100))


def test_llava_pope_questions_join_popes_labels_by_image_and_question(tmp_path):
    answers = write_pope(tmp_path, questions=8, unlabelled=2)
    table = AnswerTable(tmp_path / "pope" / "output" / "coco" / "coco_pope_random.json", "by_question_id", answer_key="label")
    questions = tmp_path / "llava" / "eval" / "pope" / "llava_pope_test.jsonl"
    dataset = LlavaDataset(questions, tmp_path / "coco" / "val2014", answers=table, template=TEMPLATE)
    assert len(dataset) == 8 and dataset.unanswered == 2
    assert [s.targets for s in dataset] == [(a,) for a in answers]
    assert [s.id for s in dataset] == [str(10000001 + i) for i in range(8)]
    # LLaVA's questions already end with the instruction: the template is not applied twice.
    assert dataset[0].prompt == f"Is there a dog in the image?\n{INSTRUCTION}"
    join = table.join([json.loads(line) for line in questions.read_text().splitlines()])
    assert (join.by_id, join.by_question, join.missing) == (0, 8, 2)


def test_ids_that_join_but_name_another_question_are_not_joined_by_id(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text("\n".join(json.dumps(r) for r in [
        {"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"},
        {"question_id": 2, "image": "a.jpg", "text": "Is there a cat in the image?", "label": "no"},
    ]))  # fmt: skip
    # Another subset numbered from 1 too (LLaVA's adversarial questions): id 1 is the cat question here.
    records = [{"question_id": 1, "image": "a.jpg", "text": "Is there a cat in the image?"}, {"question_id": 7, "image": "b.jpg", "text": "Is there a dog in the image?"}]
    join = AnswerTable(labels, "by_question_id", answer_key="label").join(records)
    assert join.answers == [["no"], None] and (join.by_id, join.by_question) == (0, 1)


# -- VQAv2, GQA, TextVQA in their official layouts ------------------------------------------


def test_vqav2_official_questions_and_annotations_with_an_image_template(tmp_path):
    answers = write_vqav2(tmp_path)
    table = AnswerTable(tmp_path / "vqav2" / "v2_mscoco_val2014_annotations.json", "by_question_id")
    dataset = LlavaDataset(
        tmp_path / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json", tmp_path / "coco" / "val2014",
        answers=table, image_template="COCO_val2014_{image_id:012d}.jpg",
    )  # fmt: skip
    assert dataset.layout == "'questions' list" and dataset.unanswered == 0
    assert [list(s.references) for s in dataset] == answers
    assert dataset[2].images[0].path == str(tmp_path / "coco" / "val2014" / "COCO_val2014_000000262149.jpg")
    assert as_pil(dataset[2].images[0]).size == (40 + 8 * (262149 % 3), 32)  # the size image() gives image 262149


def test_gqa_questions_keyed_by_question_id(tmp_path):
    answers = write_gqa(tmp_path, "testdev")
    path = tmp_path / "gqa" / "questions" / "testdev_balanced_questions.json"
    dataset = LlavaDataset(path, tmp_path / "gqa" / "images", image_template="{imageId}.jpg", template=TEMPLATE)
    assert dataset.layout == "dict keyed by question id"
    assert [s.answer for s in dataset] == answers and dataset[0].id == "20968379"
    assert dataset[3].images[0].path == str(tmp_path / "gqa" / "images" / "n161314.jpg")
    assert dataset[0].prompt == f"Is the table on the left 0?\n{INSTRUCTION}"


def test_textvqa_official_file_as_an_eval_file(tmp_path):
    answers = write_textvqa(tmp_path)
    dataset = LlavaDataset(tmp_path / "textvqa" / "TextVQA_0.5.1_val.json", tmp_path / "textvqa" / "train_images", image_template="{image_id}.jpg")
    assert dataset.layout == "'data' list" and [list(s.references) for s in dataset] == answers


def test_llava_textvqa_questions_with_repeated_ids_join_by_image_and_question(tmp_path):
    answers = write_textvqa(tmp_path, images=3, per_image=2)
    table = AnswerTable(tmp_path / "textvqa" / "TextVQA_0.5.1_val.json", "by_question_id")
    path = tmp_path / "llava" / "eval" / "textvqa" / "llava_textvqa_val_v051_ocr.jsonl"
    dataset = LlavaDataset(path, tmp_path / "textvqa" / "train_images", answers=table, template=TEMPLATE, unique_ids=False)
    assert [list(s.references) for s in dataset] == answers
    assert dataset.repeated_ids == 3 and dataset.source_ids[:2] == ["003a8ae2ef43b900"] * 2
    assert dataset.ids[:2] == ["003a8ae2ef43b900#0", "003a8ae2ef43b900#1"] and len(set(dataset.ids)) == 6
    assert dataset[0].prompt.count(INSTRUCTION) == 1 and "Reference OCR token" in dataset[0].prompt
    message = one_line(lambda: LlavaDataset(path, tmp_path / "textvqa" / "train_images", answers=table))
    assert "record 1 (line 2, id '003a8ae2ef43b900')" in message and "duplicate of record 0" in message


@pytest.mark.parametrize("layout", ["json lines", "keyed answers", "keyed records"])
def test_answers_files_in_other_layouts(tmp_path, layout):
    path = tmp_path / "answers.json"
    if layout == "json lines":
        path.write_text('{"question_id": 1, "answer": "yes"}\n{"question_id": 2, "answers": ["no", "nope"]}\n')
    elif layout == "keyed answers":
        path.write_text(json.dumps({"1": "yes", "2": ["no", "nope"]}))
    else:
        path.write_text(json.dumps({"1": {"answer": "yes"}, "2": {"answers": [{"answer": "no"}, {"answer": "nope"}]}}))
    join = AnswerTable(path, "by_question_id").join([{"question_id": 2, "question": "q"}, {"question_id": 1, "question": "p"}])
    assert join.answers == [["no", "nope"], ["yes"]] and join.by_id == 2


def test_an_answers_record_without_answers_is_one_line_naming_it(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"question_id": 1, "label": "yes"}\n{"question_id": 2, "labl": "no"}\n')
    message = one_line(lambda: AnswerTable(path, "by_question_id", answer_key="label"))
    assert message.startswith(f"{path}: record 1 (id '2'): no answers (give answers, label or answer)")


@pytest.mark.parametrize("template, record, expected", [
    ("{imageId}.jpg", {"question_id": 1, "question": "q", "answer": "a"}, "field 'imageId': missing (image_template '{imageId}.jpg' names it)"),
    ("COCO_val2014_{image_id:012d}.jpg", {"question_id": 1, "question": "q", "answer": "a", "image_id": "n12"},
     "field 'image_id': image_id='n12' does not fit image_template"),
])  # fmt: skip
def test_image_template_problems_name_the_record_and_field(tmp_path, template, record, expected):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([record]))
    message = one_line(lambda: LlavaDataset(path, image_template=template))
    assert "record 0 (id '1')" in message and expected in message


# -- Hugging Face datasets: parquet and save_to_disk, images as bytes ---------------------------


def test_a_parquet_file_with_images_stored_as_bytes(tmp_path):
    path = write_lmms_lab_parquet(tmp_path, rows=5)
    dataset = LlavaDataset(path, template=TEMPLATE)
    assert dataset.layout == "parquet" and len(dataset) == 5 and dataset.stored_images == 5 and dataset.files == [path]
    sample = dataset[3]
    assert isinstance(sample.images[0], StoredImage) and sample.targets == ("word3",) * 10
    assert as_pil(sample.images[0]).getpixel((0, 0)) == COLOURS[3] and image_size(sample.images[0]) == (36, 28)
    assert sample.prompt == f"What word is on sign 3?\n{INSTRUCTION}"
    assert str(path) in sample.images[0].where and "record 3 (id '5003')" in sample.images[0].where


def test_a_save_to_disk_folder_with_repeated_question_ids(tmp_path):
    path = write_lmms_lab_mme(tmp_path, images=3)
    dataset = LlavaDataset(path, unique_ids=False, decode_images=True)
    assert dataset.layout == "dataset folder" and len(dataset) == 6 and dataset.repeated_ids == 3
    assert dataset.ids[:2] == ["code_reasoning/0000.png#0", "code_reasoning/0000.png#1"]
    assert [s.answer for s in dataset][:2] == ["Yes", "No"]
    assert as_pil(dataset[5].images[0]).getpixel((0, 0)) == COLOURS[2]
    assert {p.name for p in dataset.files} >= {"state.json", "dataset_info.json"}


def test_a_corrupt_stored_image_is_found_when_checked(tmp_path):
    import datasets

    rows = {"question_id": [1, 2], "question": ["a?", "b?"], "answer": ["x", "y"], "image": [{"bytes": b"not an image", "path": None}] * 2}
    path = tmp_path / "bad.parquet"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(str(path))
    message = one_line(lambda: LlavaDataset(path))
    assert f"{path}: record 0 (id '1'): field 'image': cannot read {path} row 0 column 'image'" in message
    assert "and 1 more record with an unreadable image" in message


def test_a_dataset_with_several_splits_asks_for_one(tmp_path):
    import datasets

    one = datasets.Dataset.from_dict({"question_id": [1], "question": ["a?"], "answer": ["x"]})
    datasets.DatasetDict({"test": one, "validation": one}).save_to_disk(str(tmp_path / "dd"))
    message = one_line(lambda: LlavaDataset(tmp_path / "dd"))
    assert "splits ['test', 'validation']: name one split's folder" in message and str(tmp_path / "dd" / "test") in message


@pytest.mark.parametrize("content, expected", [(b"PAR1 truncated", "cannot read it as a parquet file"), (None, "is a folder, not a data file")])
def test_unreadable_datasets_are_one_line(tmp_path, content, expected):
    path = tmp_path / ("x.parquet" if content else "folder")
    path.write_bytes(content) if content else path.mkdir()
    assert expected in one_line(lambda: LlavaDataset(path))


# -- image folders -------------------------------------------------------------------------------


def test_images_relative_to_the_root_or_the_data_file_and_ambiguous_paths_are_reported(tmp_path):
    root, data = tmp_path, tmp_path / "llava"
    image(root / "coco" / "a.jpg", 0)
    image(data / "local" / "b.jpg", 1)
    image(root / "coco" / "c.jpg", 2)
    image(data / "coco" / "c.jpg", 3)  # "coco/c.jpg" names a file under both folders
    records = [
        {"id": i, "image": path, "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]}
        for i, path in enumerate(["coco/a.jpg", "local/b.jpg", "coco/c.jpg"])
    ]
    path = data / "mix.json"
    path.write_text(json.dumps(records))
    dataset = LlavaDataset(path, [root, data])
    assert [s.images[0].path for s in dataset] == [str(root / "coco" / "a.jpg"), str(data / "local" / "b.jpg"), str(root / "coco" / "c.jpg")]
    (note,) = dataset.notes
    assert note.startswith(f"{path}: 1 image path names a file under two folders; took the first folder's")
    assert f"took {root / 'coco' / 'c.jpg'}, not {data / 'coco' / 'c.jpg'}" in note
    records[0]["image"] = "coco/gone.jpg"
    path.write_text(json.dumps(records))
    message = one_line(lambda: LlavaDataset(path, [root, data]))
    assert f"no such file {root / 'coco' / 'gone.jpg'} (nor {data / 'coco' / 'gone.jpg'})" in message


def write_config(root: Path, benchmark: dict) -> Path:
    import yaml

    path = root / "stream.yaml"
    path.write_text(yaml.safe_dump({"benchmark": {"name": "files", **benchmark}}))
    return path


def test_benchmark_images_is_inherited_and_a_task_overrides_it(tmp_path):
    from mcit.benchmarks.files import load_task_file

    write_gqa(tmp_path, "train")
    write_gqa(tmp_path, "testdev")
    gqa = {"image_template": "{imageId}.jpg", "train": "gqa/questions/train_balanced_questions.json", "eval": "gqa/questions/testdev_balanced_questions.json"}
    config = load_config(write_config(tmp_path, {"images": "gqa/images", "tasks": [{"name": "gqa", **gqa}, {"name": "other", "images": "gqa", **gqa}]}))
    first, second = config.benchmark.tasks
    assert load_task_file(config.benchmark, first, "eval")[0].images[0].path == str(tmp_path / "gqa" / "images" / "n161313.jpg")
    message = one_line(lambda: load_task_file(config.benchmark, second, "eval"))
    assert f"no such file {tmp_path / 'gqa' / 'n161313.jpg'}" in message


@pytest.mark.parametrize("change, expected", [
    ({"images": "nowhere"}, "benchmark images folder {root}/nowhere does not exist"),
    ({"tasks": [{"name": "g", "train": "gqa", "eval": "gqa/questions/testdev_balanced_questions.json"}]},
     "task 'g': train {root}/gqa is a folder, not a data file or a dataset saved with save_to_disk"),
])  # fmt: skip
def test_config_checks_folders_before_reading(tmp_path, change, expected):
    write_gqa(tmp_path, "testdev")
    questions = "gqa/questions/testdev_balanced_questions.json"
    path = write_config(tmp_path, {"tasks": [{"name": "g", "train": questions, "eval": questions}], **change})
    assert expected.format(root=tmp_path) in one_line(lambda: load_config(path))


@pytest.mark.parametrize("template", ["{image.id}.jpg", "{}.jpg", "{image_id.jpg", "plain.jpg"])
def test_image_template_must_name_plain_fields(tmp_path, template):
    write_gqa(tmp_path, "testdev")
    questions = "gqa/questions/testdev_balanced_questions.json"
    path = write_config(tmp_path, {"tasks": [{"name": "g", "image_template": template, "train": questions, "eval": questions}]})
    assert "image_template must name record fields" in one_line(lambda: load_config(path))


# -- a stream's name that is also a folder --------------------------------------------------------


def test_a_stream_name_that_is_also_a_folder_uses_the_stream_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lamp_lifelong").mkdir()
    with caplog.at_level(logging.WARNING, logger="mcit.config.loading"):
        message = one_line(lambda: load_config(Path("lamp_lifelong")))
    assert "stream 'lamp_lifelong' reads your copy of its data" in message  # the published stream, not the folder
    assert "'lamp_lifelong' is both a folder here and a published stream: using the published stream" in caplog.text
    (tmp_path / "mydata").mkdir()
    assert "mydata is a folder, not a config file" in one_line(lambda: load_config(Path("mydata")))
