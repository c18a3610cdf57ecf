"""The language harness on real tiny models: the view is the live language model, lm-eval scores it.

Everything is local: lm-eval tasks are YAMLs in tmp_path reading jsonl files (``dataset_path:
json``), the datasets cache is in tmp_path too, and the Hub is switched off.
"""

from __future__ import annotations

import json
import os
import random

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
pytest.importorskip("lm_eval", reason='the language harness needs the lm-eval extra: pip install "mcit[lm-eval]"')

from mcit.errors import UserError
from mcit.evaluation.language_harness import evaluate_language, language_model_view
from vlm_families import FAMILIES

TEXT = "What color is the circle? The circle is green."
QUESTIONS = [
    ("What color is the circle?", ["green", "red", "blue"], 0),
    ("How many objects are there?", ["one", "three", "five"], 1),
]
SENTENCES = [
    "The image shows a red square",
    "The circle is green",
    "There are three objects",
    "Thank you, that is correct",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task(directory, name: str, rows: list[dict], body: str) -> None:
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    cache = directory / "datasets_cache"
    (directory / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {cache}\n"
        f"test_split: test\n{body}metadata:\n  version: 1.0\n"
    )


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Three local tasks, 6 documents each: multiple choice, a lambada-style loglikelihood, greedy generation."""
    directory = tmp_path_factory.mktemp("lm_eval_tasks")
    choice_rows = [{"question": q, "choices": c, "label": label} for q, c, label in QUESTIONS * 3]
    _task(directory, "tiny_mc", choice_rows, (
        "output_type: multiple_choice\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: label\n"
        "doc_to_choice: \"{{choices}}\"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n"
    ))  # fmt: skip
    _task(directory, "tiny_lambada", [{"text": s} for s in SENTENCES + SENTENCES[:2]], (
        "output_type: loglikelihood\ndoc_to_text: \"{{text.split(' ')[:-1]|join(' ')}}\"\n"
        "doc_to_target: \"{{' '+text.split(' ')[-1]}}\"\nmetric_list:\n  - metric: perplexity\n  - metric: acc\n"
    ))  # fmt: skip
    _task(directory, "tiny_gen", [{"question": q, "answer": c[label]} for q, c, label in QUESTIONS * 3], (
        "output_type: generate_until\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: \"{{answer}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 3\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    ))  # fmt: skip
    return directory


def _tiny():
    from mcit.models.tiny import build_tiny_vlm
    from vlm_families import BASE_CORPUS

    return build_tiny_vlm([*BASE_CORPUS, "USER: ASSISTANT:"])


def _family(name: str, directory):
    from transformers import AutoModelForImageTextToText

    from mcit.models.processors import load_processor

    path = FAMILIES[name](directory / name)
    return AutoModelForImageTextToText.from_pretrained(path), load_processor(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (model, processor): mcit's tiny model and two families (Llama LM; Qwen2-VL's M-RoPE LM)."""
    directory = tmp_path_factory.mktemp("families")
    return {"tiny": _tiny(), **{name: _family(name, directory) for name in ("llava", "qwen2_vl")}}


def _input_ids(processor) -> torch.Tensor:
    return processor.tokenizer([TEXT], return_tensors="pt").input_ids


@pytest.mark.parametrize("name", ["tiny", "llava", "qwen2_vl"])
def test_view_is_the_live_language_model(name, models):
    model, processor = models[name]
    view = language_model_view(model)
    ids = _input_ids(processor)
    with torch.no_grad():
        logits = view(ids).logits
        assert torch.equal(logits, model(input_ids=ids).logits)  # the model's text-only logits
        by_hand = model.get_output_embeddings()(model.get_decoder()(input_ids=ids).last_hidden_state)
        torch.testing.assert_close(logits, by_hand)  # embeddings -> language model -> head, no vision
    assert {p.data_ptr() for p in view.parameters()} == {p.data_ptr() for p in model.parameters()}  # shared, no copy

    weight = model.get_decoder().layers[0].mlp.down_proj.weight
    with torch.no_grad():
        weight.add_(0.5)
        try:
            changed = view(ids).logits
            assert not torch.allclose(changed, logits)  # live weights, not a snapshot
            assert torch.equal(changed, model(input_ids=ids).logits)
        finally:
            weight.sub_(0.5)


@pytest.mark.parametrize("name", ["tiny", "llava", "qwen2_vl"])
def test_scores_local_tasks(name, models, task_dir):
    model, processor = models[name]
    model.train()  # the harness runs in eval mode and leaves the run's modes as they were
    random.seed(3)
    torch.manual_seed(3)
    expected_draws = (random.random(), torch.rand(1).item())
    random.seed(3)
    torch.manual_seed(3)
    tasks = ["tiny_mc", "tiny_lambada", "tiny_gen"] if name == "llava" else ["tiny_mc"]
    result = evaluate_language(model, processor, tasks, limit=4, include_path=str(task_dir), batch_size=4, device="cpu")
    assert (random.random(), torch.rand(1).item()) == expected_draws  # lm-eval's global seeding is undone
    assert model.training and all(module.training for module in model.modules())
    model.eval()

    assert set(result["tasks"]) == set(tasks) and result["limit"] == 4
    assert result["accuracy_metric"]["tiny_mc"] == "acc_norm"
    for task in tasks:
        assert result["samples"][task] == 4
        assert 0.0 <= result["accuracy"][task] <= 1.0
    if name == "llava":
        assert result["accuracy_metric"] == {"tiny_mc": "acc_norm", "tiny_lambada": "acc", "tiny_gen": "exact_match"}
        assert result["tasks"]["tiny_lambada"]["perplexity"] > 1.0
    json.dumps(result)  # the runner writes it into the run directory


def test_a_lora_model_is_scored_with_its_adapters(task_dir):
    from peft import LoraConfig, get_peft_model

    model, processor = _tiny()
    ids = _input_ids(processor)
    with torch.no_grad():
        base = model(input_ids=ids).logits
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    view = language_model_view(peft_model)
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits
        assert not torch.allclose(adapted, base)
        assert torch.equal(view(ids).logits, adapted)  # the adapters are part of the view

    result = evaluate_language(peft_model, processor, ["tiny_mc"], limit=2, include_path=str(task_dir), batch_size=2, device="cpu")
    assert result["samples"] == {"tiny_mc": 2} and 0.0 <= result["accuracy"]["tiny_mc"] <= 1.0


def test_unreadable_task_data_is_a_user_error(models, tmp_path):
    model, processor = models["tiny"]
    _task(tmp_path, "gone", [{"text": "a b"}], "output_type: loglikelihood\ndoc_to_text: a\ndoc_to_target: b\n")
    (tmp_path / "gone.jsonl").unlink()
    with pytest.raises(UserError, match="a task's data could not be read"):
        evaluate_language(model, processor, ["gone"], limit=1, include_path=tmp_path)
    with pytest.raises(UserError, match="is not a directory"):
        evaluate_language(model, processor, ["gone"], include_path=tmp_path / "missing")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_asked_device_and_moves_back(task_dir):
    model, processor = _tiny()
    result = evaluate_language(model, processor, ["tiny_mc"], limit=2, include_path=task_dir, device="cuda")
    assert result["samples"] == {"tiny_mc": 2}
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_a_run_scores_the_harness_after_the_chosen_tasks_only(task_dir, tmp_path, tiny_config):
    from mcit.runner import Runner

    config = tiny_config(**{"language_harness": f"{{tasks: [tiny_mc], after: [color], limit: 4, include_path: {task_dir}}}"})
    results = Runner(config, tmp_path / "run").run()
    first, second = results["rows"]
    assert "language_harness" not in second
    harness = first["language_harness"]
    assert harness["samples"] == {"tiny_mc": 4} and 0.0 <= harness["accuracy"]["tiny_mc"] <= 1.0
    with pytest.raises(UserError, match="not a task of the stream"):
        Runner(tiny_config(**{"language_harness": "{tasks: [tiny_mc], after: [colour]}"}), tmp_path / "bad").run()
    assert not (tmp_path / "bad").exists()
