"""A `files` stream over small copies of the field's released files, as they ship: `mcit data check`
reads every layout and `mcit run` trains and evaluates on them end to end on the tiny model."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from mcit.benchmarks import build_stream
from mcit.benchmarks.data_check import check_data
from mcit.cli import app
from mcit.config import load_config
from released_files import (
    INSTRUCTION,
    write_gqa,
    write_llava_mix,
    write_lmms_lab_mme,
    write_lmms_lab_parquet,
    write_pope,
    write_textvqa,
    write_vqav2,
)

TEMPLATE = "{question}\n" + INSTRUCTION
TINY = ["model.name=tiny", "model.lora=null", "train.epochs=1", "train.batch_size=4", "eval.batch_size=8", "save_models=false"]
POPE_ANSWERS = {"answers_file": "pope/output/coco/coco_pope_random.json", "answer_key": "label"}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture
def released(tmp_path):
    """The released files under one root, a stream config naming them, and the answers each file should give."""
    root = tmp_path / "data"
    expected = {
        "pope": write_pope(root, questions=8, unlabelled=2),
        "vqav2": write_vqav2(root),
        "gqa": write_gqa(root, "testdev"),
        "textvqa": write_textvqa(root, images=3, per_image=2),
    }
    write_gqa(root, "train")
    write_llava_mix(root)
    write_lmms_lab_parquet(root)
    write_lmms_lab_mme(root)
    benchmark = {
        "name": "files",
        "tasks": [
            # LLaVA-665K's images are relative to the root, and so is the template's path: no `images` setting.
            {"name": "llava_mix", "train": "llava/llava_v1_5_mix665k.json", "scorer": "vqa",
             "eval": "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", "answers_file": "vqav2/v2_mscoco_val2014_annotations.json",
             "image_template": "coco/val2014/COCO_val2014_{image_id:012d}.jpg"},
            {"name": "gqa", "train": "gqa/questions/train_balanced_questions.json", "eval": "gqa/questions/testdev_balanced_questions.json",
             "images": "gqa/images", "image_template": "{imageId}.jpg", "template": TEMPLATE},
            {"name": "textvqa", "train": "lmms-lab/textvqa/data/validation-00000-of-00001.parquet", "scorer": "vqa", "template": TEMPLATE,
             "eval": "llava/eval/textvqa/llava_textvqa_val_v051_ocr.jsonl", "answers_file": "textvqa/TextVQA_0.5.1_val.json",
             "images": "textvqa/train_images"},
        ],
        "eval_only": [
            {"name": "pope", "eval": "llava/eval/pope/llava_pope_test.jsonl", "images": "coco/val2014", "template": TEMPLATE, **POPE_ANSWERS},
            {"name": "pope_labels", "eval": POPE_ANSWERS["answers_file"], "answer_key": "label", "images": "coco/val2014"},
            {"name": "textvqa_official", "eval": "textvqa/TextVQA_0.5.1_val.json", "images": "textvqa/train_images", "image_template": "{image_id}.jpg", "scorer": "vqa"},
            {"name": "mme", "eval": "lmms-lab/MME/test"},
        ],
    }  # fmt: skip
    config = root / "stream.yaml"
    config.write_text(yaml.safe_dump({"benchmark": benchmark}, sort_keys=False))
    return config, expected


def test_data_check_reads_every_released_layout(released):
    config, _ = released
    report = check_data(load_config(config).benchmark)
    files = {(f.task, f.role): (f.layout, f.records, f.images, f.repeated_ids) for f in report.files}
    assert files == {
        ("llava_mix", "train"): ("JSON list", 8, 6, 0), ("llava_mix", "eval"): ("'questions' list", 6, 3, 0),
        ("gqa", "train"): ("dict keyed by question id", 6, 3, 0), ("gqa", "eval"): ("dict keyed by question id", 6, 3, 0),
        ("textvqa", "train"): ("parquet", 5, 5, 0), ("textvqa", "eval"): ("JSON Lines", 6, 3, 3),
        ("pope", "eval"): ("JSON Lines", 8, 3, 0), ("pope_labels", "eval"): ("JSON Lines", 8, 3, 0),
        ("textvqa_official", "eval"): ("'data' list", 6, 3, 0), ("mme", "eval"): ("dataset folder", 6, 6, 3),
    }  # fmt: skip
    assert report.notes == [
        f"task 'pope': 2 of 10 eval records found no answer in {POPE_ANSWERS['answers_file']} and are left out"
    ]
    manifest = config.parent.parent / "manifest.json"
    result = CliRunner().invoke(app, ["data", "check", str(config), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "2 of 10 eval records found no answer" in output and "repeated ids" in output
    assert "ok: 65 records" in output
    hashed = json.loads(manifest.read_text())["files"]
    # A dataset's files are hashed, not its stored images (they are inside those files).
    assert {"lmms-lab/MME/test/state.json", "lmms-lab/textvqa/data/validation-00000-of-00001.parquet"} <= hashed.keys()
    assert "pope/output/coco/coco_pope_random.json" in hashed and "coco/val2014/COCO_val2014_000000000100.jpg" in hashed


def test_the_stream_holds_the_released_answers_and_prompts(released):
    config, expected = released
    stream = build_stream(load_config(config).benchmark, seed=0)
    tasks = {task.name: task for task in stream.tasks + stream.eval_only}
    assert [s.targets for s in tasks["pope"].eval] == [(a,) for a in expected["pope"]]
    assert [s.answer for s in tasks["pope_labels"].eval] == expected["pope"]
    assert [list(s.references) for s in tasks["llava_mix"].eval] == expected["vqav2"]
    assert [s.answer for s in tasks["gqa"].eval] == expected["gqa"]
    assert [list(s.references) for s in tasks["textvqa"].eval] == expected["textvqa"]
    assert [list(s.references) for s in tasks["textvqa_official"].eval] == expected["textvqa"]
    assert all(s.prompt.count(INSTRUCTION) == 1 for s in [*tasks["pope"].eval, *tasks["textvqa"].eval])
    assert tasks["llava_mix"].train[0].images[0].path == str(config.parent / "coco" / "train2017" / "000000033471.jpg")
    assert len(tasks["mme"].eval) == 6 and len({s.id for s in tasks["mme"].eval}) == 6


@pytest.mark.slow
def test_a_run_trains_and_evaluates_on_the_released_layouts(released, tmp_path):
    config, _ = released
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", str(config), *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"] == ["llava_mix", "gqa", "textvqa"]
    assert results["eval_only"] == ["pope", "pope_labels", "textvqa_official", "mme"]
    assert [row["after"] for row in results["rows"]] == ["llava_mix", "gqa", "textvqa"]
    assert [row["train_samples"] for row in results["rows"]] == [8, 6, 5]
    evaluations = json.loads((out / "evaluations" / "03-textvqa.json").read_text())
    assert {name: len(record["samples"]) for name, record in evaluations.items()} == {
        "llava_mix": 6, "gqa": 6, "textvqa": 6, "pope": 8, "pope_labels": 8, "textvqa_official": 6, "mme": 6,
    }  # fmt: skip
    assert len(evaluations["llava_mix"]["samples"][0]["references"]) == 10  # VQAv2's ten answers, joined by question_id
