"""Tests for mcit.data.llava_json: LLaVA conversation files, one-line errors, lazy images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from mcit.data.images import ImageRef, as_pil
from mcit.data.llava_json import LlavaDataset, load_llava_json
from mcit.data.sample import Sample
from mcit.errors import UserError


def png(path: Path, color: tuple[int, int, int] = (200, 10, 10), size: tuple[int, int] = (20, 12)) -> str:
    """Write a small image (RGBA, so the loader's RGB conversion is exercised) and return its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, (*color, 255)).save(path)
    return path.name


def record(id="r0", image: str | None = "a.png", question="What color?", answer="red", **extra) -> dict:
    prompt = question if "<image>" in question or image is None else f"<image>\n{question}"
    data = {"id": id, "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}
    if image is not None:
        data["image"] = image
    return {**data, **extra}


def write(tmp_path: Path, records, name: str = "data.json") -> Path:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    png(tmp_path / "a.png")
    png(tmp_path / "b.png", (10, 10, 200))
    return tmp_path


def user_error(path: Path, **options) -> str:
    """Load and return the UserError message, asserting it is one line naming the file."""
    with pytest.raises(UserError) as info:
        LlavaDataset(path, **options)
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    assert str(path) in message
    return message


# -- happy path ---------------------------------------------------------------------------


def test_loads_samples_with_stripped_prompts_and_rgb_images(images):
    path = write(images, [record("r0", "a.png", "What color?", " red "), record("r1", "b.png", "Which?\n<image>", "blue")])
    dataset = load_llava_json(path)
    assert len(dataset) == 2
    first, second = dataset[0], dataset[1]
    assert isinstance(first, Sample)
    assert (first.id, first.prompt, first.answer) == ("r0", "<image>\nWhat color?", "red")
    assert second.prompt == "Which?\n<image>"  # the marker stays where the image goes
    assert len(first.images) == 1 and first.history == ()
    image = as_pil(first.image)
    assert image.mode == "RGB" and image.size == (20, 12)
    assert image.getpixel((0, 0)) == (200, 10, 10)
    assert not isinstance(image, ImageFile.ImageFile)  # a loaded copy, no file handle kept
    assert first.references == () and first.targets == ("red",) and first.skill == ""


def test_sequence_protocol_len_slices_iteration_and_negative_index(images):
    path = write(images, [record(f"r{i}", "a.png" if i % 2 else "b.png") for i in range(5)])
    dataset = LlavaDataset(path)
    assert len(dataset) == 5
    assert [s.id for s in dataset] == ["r0", "r1", "r2", "r3", "r4"]
    assert [s.id for s in dataset[1:4:2]] == ["r1", "r3"]
    assert dataset[-1].id == "r4"
    with pytest.raises(IndexError):
        dataset[5]
    assert "5 samples" in repr(dataset)


def test_text_only_records_and_integer_ids(tmp_path):
    path = write(tmp_path, [record(7, image=None, question="2+2?", answer="4")])
    (sample,) = LlavaDataset(path)
    assert (sample.id, sample.prompt, sample.answer, sample.image) == ("7", "2+2?", "4", None)


def test_eval_fields_answers_and_skills(images):
    records = [
        record("q0", answers=["red", "dark red"], skill="color"),
        record("q1", answers="red", task="attribute"),
        {"id": "q2", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nColor?"}], "answers": ["red", "crimson"]},
    ]
    dataset = LlavaDataset(write(images, records))
    assert dataset[0].references == ("red", "dark red") and dataset[0].skill == "color"
    assert dataset[1].references == ("red",) and dataset[1].skill == "attribute"
    # No gpt turn: the first accepted answer is the answer.
    assert (dataset[2].answer, dataset[2].targets) == ("red", ("red", "crimson"))


def test_a_conversation_is_one_sample_with_its_history(images):
    conversation = [
        {"from": "human", "value": "<image>\nColor?"},
        {"from": "gpt", "value": "red"},
        {"from": "human", "value": "Shape?"},
        {"from": "gpt", "value": "square"},
        {"from": "human", "value": "Size?"},
        {"from": "gpt", "value": "small"},
    ]
    path = write(images, [{"id": "m", "image": "a.png", "conversations": conversation}, record("s")])
    chat, single = LlavaDataset(path)
    assert (chat.id, chat.prompt, chat.answer) == ("m", "Size?", "small")
    assert chat.history == (("<image>\nColor?", "red"), ("Shape?", "square"))
    assert chat.turns[-1] == ("Size?", "small") and len(chat.images) == 1
    assert single.history == ()


def test_several_images_per_record_in_nested_folders(tmp_path):
    png(tmp_path / "imgs" / "left" / "x.png")
    png(tmp_path / "imgs" / "right" / "y.png", (10, 200, 10))
    turn = [{"from": "human", "value": "<image> vs <image>: same?"}, {"from": "gpt", "value": "no"}]
    path = write(tmp_path, [{"id": 1, "image": ["imgs/left/x.png", "imgs/right/y.png"], "conversations": turn}])
    (sample,) = LlavaDataset(path)
    assert [as_pil(image).getpixel((0, 0)) for image in sample.images] == [(200, 10, 10), (10, 200, 10)]
    assert sample.prompt == "<image> vs <image>: same?"


@pytest.mark.parametrize("image, markers", [("a.png", 2), (["a.png", "b.png"], 1)])
def test_image_markers_must_match_the_images(images, image, markers):
    value = " ".join(["<image>"] * markers) + " Q?"
    turn = [{"from": "human", "value": value}, {"from": "gpt", "value": "A"}]
    message = user_error(write(images, [{"id": "k", "image": image, "conversations": turn}]))
    images_given = 1 if isinstance(image, str) else len(image)
    assert "field 'image'" in message and f"{markers} <image> marker" in message and f"but {images_given} image" in message


def test_question_answer_records_as_datasets_ship_them(images):
    records = [
        {"question_id": 101, "image": "a.png", "question": "What color?", "answers": [{"answer": "red"}, {"answer": "Red "}]},
        {"question_id": "q2", "image": "b.png", "text": "Which color?", "answer": "blue", "answers": ["blue", "navy"]},
        {"question_id": 103, "question": "2+2?", "answer": "4"},
    ]
    first, second, third = LlavaDataset(write(images, records))
    assert (first.id, first.prompt, first.answer, first.references) == ("101", "What color?", "red", ("red", "Red"))
    assert (second.answer, second.targets, len(second.images)) == ("blue", ("blue", "navy"), 1)
    assert (third.id, third.images, third.targets) == ("103", (), ("4",))


def test_question_record_without_any_answer(tmp_path):
    message = user_error(write(tmp_path, [{"question_id": 5, "question": "Why?"}]))
    assert "record 0 (id '5')" in message and "field 'answer'" in message


def test_jsonl_and_explicit_image_root(tmp_path):
    png(tmp_path / "pics" / "coco" / "x.png")
    (tmp_path / "meta").mkdir()
    path = tmp_path / "meta" / "eval.jsonl"
    path.write_text(json.dumps(record("a", "coco/x.png")) + "\n\n" + json.dumps(record("b", None)) + "\n", encoding="utf-8")
    dataset = load_llava_json(path, image_root=tmp_path / "pics")
    assert [s.id for s in dataset] == ["a", "b"]
    assert as_pil(dataset[0].image).size == (20, 12) and dataset[1].image is None


def test_user_and_assistant_roles_and_utf8_bom(tmp_path):
    data = [{"id": "t", "conversations": [{"from": "user", "value": "Hallo?"}, {"from": "assistant", "value": "Grüß dich"}]}]
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(data, ensure_ascii=False).encode("utf-8"))
    assert LlavaDataset(path)[0].answer == "Grüß dich"


def test_images_are_not_decoded_until_a_batch_needs_them(images, monkeypatch):
    opened: list[str] = []
    loaded: list[int] = []
    real_open, real_load = Image.open, ImageFile.ImageFile.load
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loaded.append(1) or real_load(self))
    path = write(images, [record(f"r{i}", "a.png") for i in range(50)])

    dataset = LlavaDataset(path, verify_images=False)
    assert opened == [] and loaded == []  # existence checks only
    LlavaDataset(path)  # verify: 50 records share one file, checked once, never decoded
    assert len(opened) == 1 and loaded == []
    opened.clear()
    sample = dataset[3]
    assert opened == [] and isinstance(sample.image, ImageRef)  # indexing keeps the path
    as_pil(sample.image)
    assert len(opened) == 1 and loaded


def test_require_answer_false_keeps_prompt_only_records(tmp_path):
    data = [{"id": "p", "conversations": [{"from": "human", "value": "Say hi"}]}]
    dataset = LlavaDataset(write(tmp_path, data), require_answer=False)
    assert (dataset[0].prompt, dataset[0].answer) == ("Say hi", "")


def test_a_loaded_sample_is_trainable_by_the_collator(images):
    from mcit.data.collate import IGNORE_INDEX, Collator
    from mcit.data.synthetic.tasks import corpus
    from mcit.models.tiny import build_tiny_vlm

    model, processor = build_tiny_vlm(corpus())
    path = write(images, [record("r0", "a.png"), record("r1", None, "2+2?", "4")])
    samples = list(LlavaDataset(path))
    batch = Collator(processor).train_batch(samples)
    answer = batch.labels[0][batch.labels[0] != IGNORE_INDEX]
    assert processor.tokenizer.decode(answer) == " red</s>"
    assert "pixel_values" in batch.inputs
    loss = model(**batch.inputs, labels=batch.labels).loss
    assert loss.isfinite()


# -- errors: file level -------------------------------------------------------------------


def test_missing_data_file(tmp_path):
    assert "no such data file" in user_error(tmp_path / "absent.json")


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"id": "a",\n   "conversations": [}\n]', encoding="utf-8")
    message = user_error(path)
    assert "not valid JSON" in message and "line 3 column" in message


def test_json_lines_in_a_json_file_are_read_by_content(tmp_path):
    path = tmp_path / "coco_pope_random.json"  # POPE ships JSON Lines under .json
    path.write_text(json.dumps(record(image=None)) + "\n" + json.dumps(record("r1", None)) + "\n", encoding="utf-8")
    dataset = LlavaDataset(path)
    assert [s.id for s in dataset] == ["r0", "r1"] and dataset.layout == "JSON Lines"
    path.write_text(json.dumps(record(image=None)) + "\n" + json.dumps({"id": "r1"}) + "\n", encoding="utf-8")
    assert "record 1 (line 2, id 'r1')" in user_error(path)


def test_a_broken_json_document_is_not_mistaken_for_json_lines(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps([record(image=None)], indent=1) + "\n]\n", encoding="utf-8")
    message = user_error(path)
    assert "not valid JSON: Extra data at line" in message


def test_invalid_jsonl_line_names_line_and_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record(image=None)) + "\n\n{oops\n", encoding="utf-8")
    message = user_error(path)
    assert "line 3 (record 1)" in message and "not valid JSON" in message


def test_top_level_not_a_list(tmp_path):
    assert "top level must be a list" in user_error(write(tmp_path, {"id": "a"}))


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"id": "caf\u00e9"}]'.encode("latin-1"))
    assert "not UTF-8" in user_error(path)


# -- errors: record level -----------------------------------------------------------------


def test_record_not_an_object(tmp_path):
    message = user_error(write(tmp_path, [record(image=None), ["not", "a", "record"]]))
    assert "record 1 (no id)" in message and "must be an object" in message


@pytest.mark.parametrize("conversations", [None, [], "hello"])
def test_missing_or_empty_conversations(tmp_path, conversations):
    data = {"id": "c"} if conversations is None else {"id": "c", "conversations": conversations}
    message = user_error(write(tmp_path, [record(image=None), data]))
    assert "record 1 (id 'c')" in message and "field 'conversations'" in message


@pytest.mark.parametrize("missing", ["from", "value"])
def test_turn_without_from_or_value(tmp_path, missing):
    bad = record("t", None)
    del bad["conversations"][1][missing]
    message = user_error(write(tmp_path, [bad]))
    assert "record 0 (id 't')" in message and f"field 'conversations[1].{missing}'" in message


def test_turns_must_alternate(tmp_path):
    bad = {"id": "t", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}
    message = user_error(write(tmp_path, [bad]))
    assert "field 'conversations[1].from'" in message and "alternate" in message


@pytest.mark.parametrize("conversations, field", [
    ([{"from": "human", "value": "Q?"}], "field 'conversations'"),
    ([{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "  "}], "field 'conversations[1].value'"),
])
def test_record_without_an_answer(tmp_path, conversations, field):
    message = user_error(write(tmp_path, [{"id": "n", "conversations": conversations}]))
    assert "record 0 (id 'n')" in message and field in message


def test_last_turn_without_an_answer(tmp_path):
    conversation = [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]
    path = write(tmp_path, [{"id": "m", "conversations": conversation}])
    assert "no gpt turn answers conversations[2]" in user_error(path)
    assert LlavaDataset(path, require_answer=False)[0].history == (("a", "b"),)


def test_earlier_turn_with_an_empty_answer(tmp_path):
    conversation = [{"from": "human", "value": "a"}, {"from": "gpt", "value": " "}] + [{"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]
    assert "field 'conversations[1].value': empty answer" in user_error(write(tmp_path, [{"id": "m", "conversations": conversation}]))


@pytest.mark.parametrize("image", [3, "", [], ["a.png", 3]])
def test_image_field_not_a_string(images, image):
    message = user_error(write(images, [record("i", image=image)]))
    assert "record 0 (id 'i')" in message and "field 'image'" in message


def test_missing_image_file(images):
    message = user_error(write(images, [record("a", "a.png"), record("g", "gone.png")]))
    assert "record 1 (id 'g')" in message and "field 'image'" in message and "gone.png" in message
    assert f"no such file {images / 'gone.png'}" in message


@pytest.mark.parametrize("verify_images", [True, False])
def test_an_image_path_that_is_a_folder_is_reported_as_a_folder(images, verify_images):
    (images / "photos.png").mkdir()
    message = user_error(write(images, [record("a", "a.png"), record("d", "photos.png")]), verify_images=verify_images)
    assert "record 1 (id 'd')" in message and "field 'image'" in message
    assert f"{images / 'photos.png'} is a directory, not an image file" in message
    assert "no such file" not in message


def test_corrupt_image_fails_verification_at_load(images):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    message = user_error(write(images, [record("c", "broken.png")]))
    assert "record 0 (id 'c')" in message and "field 'image'" in message and "broken.png" in message


def test_corrupt_image_without_verification_fails_when_decoded(images):
    data = (images / "a.png").read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    path = write(images, [record("ok"), record("c", "truncated.png")])
    dataset = LlavaDataset(path, verify_images=False)  # no decoding at load
    assert as_pil(dataset[0].image) is not None
    with pytest.raises(UserError) as info:
        as_pil(dataset[1].image)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "record 1 (id 'c')" in message and "field 'image'" in message and "cannot decode" in message


def test_duplicate_id_names_both_records(tmp_path):
    message = user_error(write(tmp_path, [record("a", None), record("b", None), record("a", None)]))
    assert "record 2 (id 'a')" in message and "field 'id'" in message and "duplicate of record 0" in message


def test_missing_id(tmp_path):
    data = record(image=None)
    del data["id"]
    message = user_error(write(tmp_path, [data]))
    assert "record 0 (no id)" in message and "field 'id'" in message


@pytest.mark.parametrize("extra, field", [({"answers": []}, "answers"), ({"answers": [1]}, "answers"), ({"skill": 3}, "skill")])
def test_bad_eval_fields(tmp_path, extra, field):
    assert f"field {field!r}" in user_error(write(tmp_path, [record("e", None, **extra)]))


def test_jsonl_errors_name_the_line(tmp_path):
    path = write(tmp_path, [record("a", None), {"id": "b"}], "data.jsonl")
    assert "record 1 (line 2, id 'b')" in user_error(path)


def test_errors_count_other_records_with_the_same_problem(tmp_path):
    no_answer = [{"id": f"n{i}", "conversations": [{"from": "human", "value": "Q?"}]} for i in range(13)]
    records = [record("ok", None), *no_answer, "junk", {"id": "x"}]
    message = user_error(write(tmp_path, records))
    assert message.startswith(f"{tmp_path / 'data.json'}: record 1 (id 'n0')")
    assert "(and 12 more records without an answer; 2 records with other problems)" in message


def test_structural_problems_are_reported_before_image_checks(tmp_path):
    message = user_error(write(tmp_path, [record("g", "gone.png"), record("n", None, answer="")]))
    assert "record 1 (id 'n')" in message and "other problems" not in message


def test_image_root_that_is_not_a_directory(images):
    message = user_error(write(images, [record("a"), record("t", None)]), image_root=images / "nowhere")
    assert "image_root" in message and "nowhere" in message and "(1 record with images)" in message


def test_template_wraps_bare_questions_but_not_conversations(tmp_path):
    template = "{question}\nAnswer the question using a single word or phrase."
    qa = {"question_id": 7, "question": "What color is it? ", "answers": ["red"] * 10}
    path = write(tmp_path, [qa, record("c1", image=None, question="Say hi.", answer="hi")])
    plain, wrapped = LlavaDataset(path), LlavaDataset(path, template=template)
    assert plain[0].prompt == "What color is it?"
    assert wrapped[0].prompt == "What color is it?\nAnswer the question using a single word or phrase."
    assert wrapped[1].prompt == plain[1].prompt == "Say hi."


@pytest.mark.parametrize("template", ["{question}\nAnswer the question using a single word or phrase.", "Question: {question} Short answer:"])
def test_a_template_is_not_applied_to_a_question_that_already_carries_it(tmp_path, template):
    carried = template.replace("{question}", "What is written?\nReference OCR token: STOP")
    path = write(tmp_path, [{"question_id": 1, "question": carried, "answer": "stop"}, {"question_id": 2, "question": "Why?", "answer": "x"}])
    dataset = LlavaDataset(path, template=template)
    assert dataset[0].prompt == carried and dataset[1].prompt == template.replace("{question}", "Why?")


def test_numeric_and_list_answers_of_question_records(tmp_path):
    path = write(tmp_path, [
        {"question_id": 1, "text": "How many?", "answer": 3},
        {"question_id": 2, "text": "Read it.", "answer": ["STOP", "stop sign"]},
    ])  # fmt: skip
    dataset = LlavaDataset(path)
    assert (dataset[0].answer, dataset[0].targets) == ("3", ("3",))
    assert (dataset[1].answer, dataset[1].targets) == ("STOP", ("STOP", "stop sign"))
    bad = write(tmp_path, [{"question_id": 1, "text": "q", "answer": {"x": 1}}], "bad.json")
    assert "field 'answer': must be a string, a number or a list of strings" in user_error(bad)


def test_answer_key_reads_the_answer_from_another_field(tmp_path):
    path = write(tmp_path, [{"question_id": 1, "text": "Where is the dog?", "answer_bbox": "[0.1, 0.2, 0.5, 0.6]"}])
    assert LlavaDataset(path, answer_key="answer_bbox")[0].answer == "[0.1, 0.2, 0.5, 0.6]"
    message = user_error(path)
    assert "field 'answer': no answer (give answer or answers)" in message


def test_answers_from_a_separate_file_by_question_id_and_by_position(tmp_path):
    from mcit.data.answer_files import AnswerTable

    questions = write(tmp_path, [{"question_id": 5, "text": "What?", "answer": "a"}, {"question_id": 9, "text": "Who?", "answer": "b"}])
    textvqa = tmp_path / "TextVQA_0.5.1_val.json"
    textvqa.write_text(json.dumps({"data": [{"question_id": 9, "answers": ["x"] * 10}, {"question_id": 5, "answers": ["y"] * 10}]}))
    dataset = LlavaDataset(questions, answers=AnswerTable(textvqa, "by_question_id"))
    assert dataset[0].targets == ("y",) * 10 and dataset[1].targets == ("x",) * 10
    vqav2 = tmp_path / "annotations.json"
    vqav2.write_text(json.dumps({"annotations": [{"question_id": 5, "answers": [{"answer": "two", "answer_id": 1}]}]}))
    partial = LlavaDataset(questions, answers=AnswerTable(vqav2, "by_question_id"))
    assert [s.id for s in partial] == ["5"] and partial[0].targets == ("two",) and partial.unanswered == 1
    nothing = tmp_path / "other.json"
    nothing.write_text(json.dumps({"annotations": [{"question_id": 77, "answers": ["x"]}]}))
    message = user_error(questions, answers=AnswerTable(nothing, "by_question_id"))
    assert f"none of its 2 records has answers in {nothing}" in message
    coco = tmp_path / "val_coco_type.json"
    coco.write_text(json.dumps({"images": [], "annotations": [
        {"image_id": 2, "caption": "a cat"}, {"image_id": 1, "caption": "a dog"}, {"image_id": 1, "caption": "one dog"},
    ]}))  # fmt: skip
    by_position = LlavaDataset(questions, answers=AnswerTable(coco, "coco_captions_by_position"))
    assert by_position[0].targets == ("a dog", "one dog") and by_position[1].targets == ("a cat",)
