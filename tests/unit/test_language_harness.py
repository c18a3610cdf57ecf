"""The language harness without models: its config block, its errors, its metric parsing."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError

from mcit.config.language_harness import LanguageHarnessConfig
from mcit.errors import UserError
from mcit.evaluation import language_harness
from mcit.evaluation.language_harness import evaluate_language, language_model_view, lm_eval_available

STREAM = ["color", "count", "shape"]


def test_config_defaults_and_fields():
    options = LanguageHarnessConfig(tasks=["arc_easy"])
    assert (options.after, options.limit, options.include_path, options.batch_size) == ("last", None, None, 8)
    for name, field in LanguageHarnessConfig.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    "data",
    [
        {},  # tasks is required
        {"tasks": []},
        {"tasks": ["arc_easy", "arc_easy"]},
        {"tasks": ["arc_easy"], "limit": 0},
        {"tasks": ["arc_easy"], "batch_size": 0},
        {"tasks": ["arc_easy"], "after": "first"},
        {"tasks": ["arc_easy"], "num_fewshot": 5},  # unknown keys are refused
    ],
)
def test_config_refuses(data):
    with pytest.raises(ValidationError):
        LanguageHarnessConfig(**data)


@pytest.mark.parametrize(
    ("after", "expected"),
    [("last", [False, False, True]), ("all", [True, True, True]), (["color", "shape"], [True, False, True])],
)
def test_runs_after(after, expected):
    options = LanguageHarnessConfig(tasks=["wsc273"], after=after)
    options.check_after(STREAM)
    assert [options.runs_after(task, STREAM) for task in STREAM] == expected


def test_check_after_names_the_unknown_task():
    with pytest.raises(UserError, match=r"'colour' is not a task of the stream .* Did you mean 'color'\?"):
        LanguageHarnessConfig(tasks=["wsc273"], after=["colour"]).check_after(STREAM)


def test_missing_lm_eval_is_one_line_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    for call in (lambda: evaluate_language(torch.nn.Linear(2, 2), None, ["arc_easy"]), lm_eval_available):
        with pytest.raises(UserError) as caught:
            call()
        message = str(caught.value)
        assert 'pip install "mcit[lm-eval]"' in message and "\n" not in message


def test_models_without_a_language_model_are_refused():
    from transformers import LlamaConfig, LlamaModel

    with pytest.raises(UserError, match="needs a transformers model, got Linear"):
        language_model_view(torch.nn.Linear(2, 2))
    config = LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=32
    )
    with pytest.raises(UserError, match="no language model with an output head in LlamaModel"):
        language_model_view(LlamaModel(config))  # a decoder without an LM head


def test_unknown_task_suggests_the_closest(monkeypatch, tmp_path):
    managers = {False: SimpleNamespace(all_tasks=["tiny_mc"]), True: SimpleNamespace(all_tasks=["arc_easy", "tiny_mc"])}
    monkeypatch.setattr(language_harness, "_task_manager", lambda paths, defaults: managers[defaults])
    assert language_harness._manager_for(["tiny_mc"], [str(tmp_path)]) is managers[False]  # local tasks alone
    assert language_harness._manager_for(["arc_easy", "tiny_mc"], [str(tmp_path)]) is managers[True]
    with pytest.raises(UserError, match=r"unknown lm-eval task 'arc_eassy' .*Did you mean 'arc_easy'\?"):
        language_harness._manager_for(["arc_eassy"], [str(tmp_path)])


def test_metrics_are_parsed_from_lm_eval_results():
    entry = {
        "alias": "arc_easy", "sample_len": 4, "acc,none": 0.25, "acc_stderr,none": "N/A", "acc_norm,none": 0.5,
        "exact_match,strict-match": 1, "flag,none": True,
    }  # fmt: skip
    metrics = language_harness._metrics(entry)
    assert metrics == {"acc": 0.25, "acc_norm": 0.5, "exact_match,strict-match": 1.0}
    assert language_harness._headline(metrics) == ("acc_norm", 0.5)
    assert language_harness._headline({"perplexity": 3.0, "acc": 0.1}) == ("acc", 0.1)
    assert language_harness._headline({"perplexity": 3.0}) == (None, None)
