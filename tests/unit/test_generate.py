"""Greedy generation stops at the model's own end-of-turn tokens, not only the tokenizer's eos."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mcit.data.collate import Collator
from mcit.data.sample import Sample
from mcit.data.synthetic.tasks import corpus
from mcit.evaluation.generate import generate_answers, stop_token_ids
from mcit.models.tiny import build_tiny_vlm

PROMPTS = [Sample("a", "What color is it?", "red"), Sample("b", "Hi", "red")]


@pytest.fixture(scope="module")
def scripted():
    """The tiny VLM rewired into a bigram model that answers ' red', then a stop candidate, then garbage.

    Zeroing every attention and MLP output projection leaves each position's hidden state
    equal to its own token embedding, so the next token depends on the current token only;
    the untied LM head then spells out a fixed chain from the prompt's last token (':').
    """
    model, processor = build_tiny_vlm(corpus(), seed=0)
    tokenizer = processor.tokenizer
    ids = SimpleNamespace(
        colon=tokenizer.convert_tokens_to_ids(":"),
        answer=tokenizer.encode(" red", add_special_tokens=False)[0],
        plain_stop=tokenizer.convert_tokens_to_ids("?"),
        special_stop=tokenizer.unk_token_id,
        garbage=tokenizer.convert_tokens_to_ids("ĠASSISTANT"),
        eos=tokenizer.eos_token_id,
    )
    assert tokenizer.decode([ids.answer]) == " red" and len({*vars(ids).values()}) == 6
    hidden = model.config.text_config.hidden_size
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("o_proj", "down_proj")):
                module.weight.zero_()
        embeddings = model.get_input_embeddings().weight
        model.lm_head.weight = torch.nn.Parameter(torch.zeros(embeddings.shape))  # untied from the embeddings
    return model, Collator(processor), ids, hidden


def script(model, hidden: int, chain: list[tuple[int, int]]) -> None:
    """Make token ``a`` be followed by token ``b`` for each pair, greedily and by a wide margin."""
    with torch.no_grad():
        model.lm_head.weight.zero_()
        embeddings = model.get_input_embeddings().weight
        for slot, (current, following) in enumerate(chain):
            embeddings[current] = torch.nn.functional.one_hot(torch.tensor(slot), hidden).float()
        for slot, (current, following) in enumerate(chain):
            model.lm_head.weight[following, slot] = 1.0


def answers_with(model, collator, eos_token_id) -> tuple[list[str], list[int], object]:
    """Answers with ``generation_config.eos_token_id`` set, the new-token count and the stop ids passed."""
    model.generation_config.eos_token_id = eos_token_id
    calls = []
    generate = model.generate

    def recording(**kwargs):
        output = generate(**kwargs)
        calls.append((output.shape[1] - kwargs["input_ids"].shape[1], kwargs["eos_token_id"]))
        return output

    model.generate = recording
    try:
        answers = generate_answers(model, collator, PROMPTS, max_new_tokens=6, batch_size=2)
    finally:
        del model.generate
    (length, passed), = calls
    return answers, length, passed


@pytest.mark.parametrize("stop", ["plain_stop", "special_stop"])
def test_generation_stops_at_an_end_of_turn_token_listed_by_the_model(scripted, stop):
    model, collator, ids, hidden = scripted
    end_of_turn = getattr(ids, stop)
    script(model, hidden, [(ids.colon, ids.answer), (ids.answer, end_of_turn), (end_of_turn, ids.garbage), (ids.garbage, ids.garbage)])

    answers, length, passed = answers_with(model, collator, [ids.eos, end_of_turn])
    assert answers == ["red", "red"]
    assert passed == [ids.eos, end_of_turn]
    assert length == 2, "generation ended at the end-of-turn token instead of running to max_new_tokens"

    # With the tokenizer's eos alone, the same model runs on past its end of turn.
    for eos_only in (ids.eos, None):
        answers, length, passed = answers_with(model, collator, eos_only)
        assert passed == [ids.eos] and length == 6
        assert all(a.startswith("red") and a.endswith("ASSISTANT ASSISTANT") for a in answers), answers


def test_the_tokenizers_eos_still_ends_an_answer(scripted):
    model, collator, ids, hidden = scripted
    script(model, hidden, [(ids.colon, ids.answer), (ids.answer, ids.eos), (ids.eos, ids.garbage)])
    answers, length, _ = answers_with(model, collator, [ids.plain_stop])
    assert answers == ["red", "red"] and length == 2


def test_stop_token_ids_merge_the_generation_config_and_the_tokenizer_in_order():
    tokenizer = SimpleNamespace(eos_token_id=2)

    def model(eos):
        return SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=eos))

    assert stop_token_ids(model([7, 2, 9, 7]), tokenizer) == [7, 2, 9]
    assert stop_token_ids(model(7), tokenizer) == [7, 2]
    assert stop_token_ids(model(None), tokenizer) == [2]
    assert stop_token_ids(model([]), SimpleNamespace(eos_token_id=None)) == []
    assert stop_token_ids(SimpleNamespace(), tokenizer) == [2]  # no generation config at all
