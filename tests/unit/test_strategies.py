"""Strategy hooks in isolation: buffers, unions, chaining, and state round-trips."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from digit_model import DigitCollator, DigitLM
from mcit.data.sample import Sample
from mcit.data.synthetic.tasks import TASKS
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import STRATEGIES, Context, Stage, Strategy, StrategyChain, TaskView
from mcit.strategies.er import EROptions, ExperienceReplay
from mcit.strategies.joint import Joint
from mcit.training.loop import train
from mcit.training.settings import TrainConfig


def context(index: int, name: str, train: list[Sample]) -> Context:
    return Context(torch.nn.Linear(2, 2), TaskView(index, name, train), seed=index, device=torch.device("cpu"))


def finish(strategy: Strategy, index: int, name: str, train: list[Sample]) -> list[Sample]:
    ctx = context(index, name, train)
    strategy.before_task(ctx)
    data = list(strategy.train_data(ctx, train))
    strategy.after_task(ctx)
    return data


def test_er_keeps_a_random_buffer_per_task_and_replays_all_of_them(tmp_path):
    color = TASKS.get("color").generate(30, 0, "train")
    count = TASKS.get("count").generate(30, 0, "train")
    shape = TASKS.get("shape").generate(30, 0, "train")
    er = ExperienceReplay(EROptions(buffer_per_task=5))

    assert finish(er, 0, "color", color) == color  # nothing to replay yet
    data = finish(er, 1, "count", count)
    assert len(data) == 35 and data[:30] == count
    assert {s.id for s in data[30:]} <= {s.id for s in color}
    data = finish(er, 2, "shape", shape)
    assert len(data) == 40
    assert {s.skill for s in data[30:]} == {"color", "count"}
    assert {name: len(b) for name, b in er.buffers.items()} == {"color": 5, "count": 5, "shape": 5}


def lookup_of(task: str, samples: list[Sample]):
    """A run's sample lookup over one task's (re-generated) training samples."""
    by_id = {s.id: s for s in samples}

    def lookup(name: str, sample_id: str) -> Sample:
        assert name == task, f"asked for task {name!r}"
        return by_id[sample_id]

    return lookup


def replayed(strategy: Strategy, lookup) -> list[Sample]:
    """What a restored strategy mixes into the next task's data, read through the run's lookup."""
    ctx = Context(torch.nn.Linear(2, 2), TaskView(1, "next", []), seed=1, device=torch.device("cpu"), lookup=lookup)
    return list(strategy.train_data(ctx, []))


def test_er_buffer_is_seeded_and_survives_a_state_round_trip(tmp_path):
    color = TASKS.get("color").generate(40, 0, "train")
    first, second = ExperienceReplay(EROptions(buffer_per_task=6)), ExperienceReplay(EROptions(buffer_per_task=6))
    finish(first, 0, "color", color)
    finish(second, 0, "color", color)
    assert [s.id for s in first.buffers["color"]] == [s.id for s in second.buffers["color"]]

    state = first.state_dict()
    assert state["buffers"] == {"color": [s.id for s in first.buffers["color"]]}, "references, not pixels"
    save_state_tree(state, tmp_path / "state")
    restored = ExperienceReplay(EROptions(buffer_per_task=6))
    restored.load_state_dict(load_state_tree(tmp_path / "state"))
    # A resumed run re-generates the stream, so the lookup hands out fresh sample objects.
    copies = replayed(restored, lookup_of("color", TASKS.get("color").generate(40, 0, "train")))
    assert len(copies) == 6
    for original, copy in zip(first.buffers["color"], copies):
        assert (copy.id, copy.prompt, copy.answer, copy.skill) == (original.id, original.prompt, original.answer, original.skill)
        assert copy.image.tobytes() == original.image.tobytes()


def test_er_keeps_text_only_samples_without_images(tmp_path):
    arithmetic = TASKS.get("arithmetic").generate(10, 0, "train")
    er = ExperienceReplay(EROptions(buffer_per_task=3))
    finish(er, 0, "arithmetic", arithmetic)
    save_state_tree(er.state_dict(), tmp_path / "s")
    restored = ExperienceReplay()
    restored.load_state_dict(load_state_tree(tmp_path / "s"))
    copies = replayed(restored, lookup_of("arithmetic", arithmetic))
    assert all(s.image is None for s in copies)
    assert [s.answer for s in copies] == [s.answer for s in er.buffers["arithmetic"]]


def test_joint_trains_on_the_union_of_tasks_so_far():
    color = TASKS.get("color").generate(8, 0, "train")
    count = TASKS.get("count").generate(9, 0, "train")
    joint = Joint()
    assert len(finish(joint, 0, "color", color)) == 8
    data = finish(joint, 1, "count", count)
    assert sorted(s.id for s in data) == sorted(s.id for s in color + count)


class AddOne(Strategy):
    def loss(self, ctx, batch, outputs, loss):
        return loss + 1

    def train_data(self, ctx, data):
        return list(data) + ["one"]


class Double(Strategy):
    def loss(self, ctx, batch, outputs, loss):
        return loss * 2

    def train_data(self, ctx, data):
        return list(data) + ["double"]


def test_chain_calls_hooks_by_stage_then_name_whatever_the_list_order():
    ctx = context(0, "t", [])
    for listed in ([("add", AddOne()), ("double", Double())], [("double", Double()), ("add", AddOne())]):
        chain = StrategyChain(listed)
        assert chain.loss(ctx, None, None, torch.tensor(1.0)).item() == 4.0  # same stage, by name: (1 + 1) * 2
        assert chain.train_data(ctx, []) == ["one", "double"]

    class DoubleFirst(Double):
        stages = {"loss": Stage.ARRANGE}

    for listed in ([("add", AddOne()), ("z", DoubleFirst())], [("z", DoubleFirst()), ("add", AddOne())]):
        assert StrategyChain(listed).loss(ctx, None, None, torch.tensor(1.0)).item() == 3.0  # its earlier stage: 1 * 2 + 1


def test_chain_state_is_keyed_by_position_and_name():
    color = TASKS.get("color").generate(10, 0, "train")
    er = ExperienceReplay(EROptions(buffer_per_task=2))
    chain = StrategyChain([("er", er), ("seqft", STRATEGIES.get("seqft")())])
    finish(chain, 0, "color", color)
    state = chain.state_dict()
    assert set(state) == {"0:er", "1:seqft"}
    fresh = StrategyChain([("er", ExperienceReplay(EROptions(buffer_per_task=2))), ("seqft", STRATEGIES.get("seqft")())])
    fresh.load_state_dict(state)
    assert [s.id for s in replayed(fresh, lookup_of("color", color))] == [s.id for s in er.buffers["color"]]


def digit_samples(task: str, count: int = 8) -> list[Sample]:
    return [Sample(f"{task}-{i}", str(i % 10), str((3 * i + len(task)) % 10), skill=task) for i in range(count)]


def assert_same_tree(first, second, where: str = "state") -> None:
    """Two state trees are equal: same keys, same lengths, equal leaves (tensors bit for bit)."""
    assert type(first) is type(second) or (torch.is_tensor(first) and torch.is_tensor(second)), where
    if isinstance(first, dict):
        assert list(first) == list(second), where
        for key in first:
            assert_same_tree(first[key], second[key], f"{where}.{key}")
    elif isinstance(first, (list, tuple)):
        assert len(first) == len(second), where
        for index, (a, b) in enumerate(zip(first, second)):
            assert_same_tree(a, b, f"{where}[{index}]")
    elif torch.is_tensor(first):
        assert first.dtype == second.dtype and torch.equal(first, second), where
    else:
        assert first == second, where


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_registered_method_validates_its_options_and_documents_them(name):
    options_class = STRATEGIES.get(name).options_class
    with pytest.raises(ValidationError, match="not_an_option"):
        options_class(not_an_option=1)
    undocumented = [field for field, info in options_class.model_fields.items() if not (info.description or "").strip()]
    assert undocumented == [], f"{name}: options without a description"


def model_for(strategy_class: type[Strategy]):
    """The digit LM, or, for a method that restructures a multimodal model (adapters, projectors), the tiny VLM.

    Returns ``(model, collator, samples_of(task_index))``.
    """
    if strategy_class.setup_model is Strategy.setup_model:
        return DigitLM(), DigitCollator(), lambda index: digit_samples(["a", "bb", "ccc"][index])
    from mcit.config import LoraConfig
    from mcit.data.collate import Collator
    from mcit.models.hf import configure_trainable, load_vlm

    model, processor = load_vlm("tiny")
    lora = LoraConfig(r=2) if strategy_class.peft_lora == "required" else None
    model = configure_trainable(model, ["projector"], lora)
    return model, Collator(processor), lambda index: TASKS.get(["color", "count", "shape"][index]).generate(8, index, "train")


TASK_NAMES = ["a", "bb", "ccc"]


def train_task(strategy, model, collator, samples_of, index: int) -> float:
    """Train task ``index`` with the run's sample lookup (which a replay buffer restored from state reads)."""
    view = TaskView(index, TASK_NAMES[index], samples_of(index))
    by_id = {(TASK_NAMES[i], s.id): s for i in range(index + 1) for s in samples_of(i)}
    ctx = Context(model, view, seed=index, device=torch.device("cpu"), collator=collator, lookup=lambda task, sample_id: by_id[task, sample_id])
    strategy.before_task(ctx)
    stats = train(ctx, list(strategy.train_data(ctx, view.train)), strategy, TrainConfig(epochs=1, batch_size=4))
    strategy.after_task(ctx)
    return stats.final_loss


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_registered_method_resumes_from_its_saved_state(name, tmp_path):
    """After two trained tasks, a fresh instance loaded from the saved state, on a model rebuilt
    as a resumed run rebuilds it (setup_model, then the weights), trains the third task to the
    same loss and the same weights as the instance that never stopped."""
    strategy_class = STRATEGIES.get(name)
    strategy = strategy_class()
    model, collator, samples_of = model_for(strategy_class)
    model = strategy.setup_model(model, seed=0)
    for index in range(2):
        train_task(strategy, model, collator, samples_of, index)
    state = strategy.state_dict()
    assert isinstance(state, dict)
    save_state_tree({"strategy": state, "model": model.state_dict()}, tmp_path / "state")
    saved = load_state_tree(tmp_path / "state")
    fresh = strategy_class()
    fresh.load_state_dict(saved["strategy"])
    assert_same_tree(fresh.state_dict(), state)
    rebuilt, _, _ = model_for(strategy_class)
    rebuilt = fresh.setup_model(rebuilt, seed=0)
    rebuilt.load_state_dict(saved["model"])

    loss = train_task(strategy, model, collator, samples_of, 2)
    assert train_task(fresh, rebuilt, collator, samples_of, 2) == loss
    after, resumed = model.state_dict(), rebuilt.state_dict()
    assert after.keys() == resumed.keys()
    assert [key for key in after if not torch.equal(after[key], resumed[key])] == []
    assert_same_tree(fresh.state_dict(), strategy.state_dict())
