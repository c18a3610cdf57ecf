"""TIR: the similarity rule on hand-made embeddings, relaxation by owner, and the tiny-model wiring."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from mcit.data.collate import IGNORE_INDEX, Collator
from mcit.data.synthetic.tasks import TASKS
from mcit.models.hf import load_vlm
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.strategies._importance import normalise_mean_one
from mcit.strategies.ewc import EWCOptions, fisher_diagonal
from mcit.strategies.mas import MASOptions, output_sensitivity
from mcit.strategies.tir import TIR, TIROptions, merge_max, relax, similarities, task_embedding


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def vec(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_similarity_is_the_product_of_sigmoids_of_pair_cosines_standardised_over_all_pairs():
    answer = vec(0.3, 0.4)  # the same for every task: all answer cosines equal, spread 0 -> z = 0
    embeddings = [
        {"instruction": vec(1, 0), "answer": answer, "image": vec(2, 0)},
        {"instruction": vec(0, 1), "answer": answer},  # text-only: no image modality
        {"instruction": vec(3, 0), "answer": answer, "image": vec(0, 5)},
    ]
    # Instruction cosines of the pairs (1,0), (2,0), (2,1): 0, 1, 0; mean 1/3, population std
    # sqrt(2)/3, so z(2,0) = sqrt(2) and z(2,1) = -1/sqrt(2). The image has one pair, (2,0): z = 0.
    expected = [sigmoid(math.sqrt(2)) * 0.5 * 0.5, sigmoid(-1 / math.sqrt(2)) * 0.5]
    assert similarities(embeddings) == pytest.approx(expected, rel=1e-9)
    assert similarities(embeddings[:1]) == []


def test_a_single_past_task_counts_as_average_similarity_in_every_shared_modality():
    a = {"instruction": vec(1, 0), "answer": vec(0, 1), "image": vec(1, 1)}
    near = {"instruction": vec(1, 0.1), "answer": vec(0, 1), "image": vec(1, 1)}
    far = {"instruction": vec(-1, 0), "answer": vec(1, 0)}
    assert similarities([a, near]) == pytest.approx([0.5**3])
    assert similarities([a, far]) == pytest.approx([0.5**2])  # no image in common


def test_relaxation_scales_each_element_by_one_minus_its_owners_similarity():
    importance = {"w": torch.tensor([[2.0, 4.0], [6.0, 8.0]]), "b": torch.tensor([10.0])}
    owners = {"w": torch.tensor([[0, 1], [1, 0]], dtype=torch.int16), "b": torch.tensor([1], dtype=torch.int16)}
    relaxed = relax(importance, owners, [0.25, 0.75])
    assert torch.equal(relaxed["w"], torch.tensor([[1.5, 1.0], [1.5, 6.0]]))
    assert torch.equal(relaxed["b"], torch.tensor([2.5]))


def test_merge_keeps_the_elementwise_max_and_which_task_owned_it():
    first = {"w": torch.tensor([1.0, 5.0, 2.0])}
    importance, owners = merge_max(None, None, first, 0)
    assert torch.equal(importance["w"], first["w"]) and owners["w"].tolist() == [0, 0, 0]
    importance, owners = merge_max(importance, owners, {"w": torch.tensor([3.0, 1.0, 2.0])}, 1)
    assert importance["w"].tolist() == [3.0, 5.0, 2.0] and owners["w"].tolist() == [1, 0, 0]  # a tie stays old
    importance, owners = merge_max(importance, owners, {"w": torch.tensor([0.0, 9.0, 1.0])}, 2)
    assert importance["w"].tolist() == [3.0, 9.0, 2.0] and owners["w"].tolist() == [1, 2, 0]
    assert owners["w"].dtype == torch.int16


@pytest.fixture(scope="module")
def tiny():
    return load_vlm("tiny")


def context(tiny, index: int, name: str, count: int = 6, model=None) -> Context:
    model = model if model is not None else copy.deepcopy(tiny[0])
    view = TaskView(index, name, TASKS.get(name).generate(count, index, "train"))
    return Context(model, view, seed=index, device=torch.device("cpu"), collator=Collator(tiny[1]))


def test_task_embedding_is_the_mean_of_normalised_per_sample_features(tiny):
    ctx = context(tiny, 0, "color", 3)
    ctx.task.train = list(ctx.task.train) + TASKS.get("arithmetic").generate(2, 0, "train")  # mixed lengths
    model, image_token = ctx.model, ctx.model.config.image_token_id
    table = model.get_input_embeddings().weight
    with torch.no_grad():  # padding_idx rows start at 0, which would hide padding counted as prompt
        table[ctx.collator.pad_id] = 1.0
    per_sample: dict[str, list[torch.Tensor]] = {"instruction": [], "answer": [], "image": []}
    for sample in ctx.task.train:  # one sample at a time: no padding to get wrong
        batch = ctx.collator.train_batch([sample])
        ids, labels = batch.inputs["input_ids"][0], batch.labels[0]
        per_sample["instruction"].append(table[ids[(labels == IGNORE_INDEX) & (ids != image_token)]].mean(0))
        per_sample["answer"].append(table[ids[labels != IGNORE_INDEX]].mean(0))
        if sample.image is not None:
            per_sample["image"].append(model.model.vision_tower(batch.inputs["pixel_values"]).pooler_output[0])
    embedding = task_embedding(ctx, limit=100, batch_size=5)
    assert set(embedding) == {"instruction", "answer", "image"}
    for modality, vectors in per_sample.items():
        expected = torch.stack([F.normalize(v.detach(), dim=0) for v in vectors]).mean(0)
        assert torch.allclose(embedding[modality], expected, atol=1e-6), modality
    text_only = context(tiny, 1, "arithmetic", 3, model=model)
    assert set(task_embedding(text_only, limit=100)) == {"instruction", "answer"}


def nudge(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Move every trainable parameter by a seeded small step; returns the steps by name."""
    generator = torch.Generator().manual_seed(seed)
    steps = {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            steps[name] = 1e-2 * torch.randn(param.shape, generator=generator)
            param.add_(steps[name])
    return steps


def task_importance(ctx: Context, kind: str, samples: int) -> dict[str, torch.Tensor]:
    if kind == "ewc":
        return normalise_mean_one(fisher_diagonal(ctx, EWCOptions(importance_samples=samples)))
    return normalise_mean_one(output_sensitivity(ctx, MASOptions(importance_samples=samples)))


@pytest.mark.parametrize("kind", ["ewc", "mas"])
def test_penalty_uses_the_max_importance_relaxed_by_the_owners_similarity(tiny, kind):
    options = TIROptions(importance=kind, strength=3.0, importance_samples=3, embedding_samples=4)
    tir = STRATEGIES.get("tir")(options)
    color = context(tiny, 0, "color")
    count = context(tiny, 1, "count", model=color.model)
    tir.before_task(color)
    nudge(color.model, 0)
    zero = torch.tensor(0.0)
    assert tir.loss(color, None, None, zero) is zero  # no penalty during the first task
    omega_color = task_importance(color, kind, 3)
    tir.after_task(color)
    assert all(torch.equal(tir.importance[n], omega_color[n]) for n in omega_color)
    assert all((o == 0).all() for o in tir.owners.values())

    tir.before_task(count)
    assert tir.history == [[], [0.125]]  # one pair: sigmoid(0) in each of three modalities
    assert tir.loss(count, None, None, zero).item() == 0.0  # at theta*
    steps = nudge(count.model, 1)
    scale = 1.5 if kind == "ewc" else 3.0
    expected = scale * sum((0.875 * omega_color[n] * steps[n].square()).sum() for n in steps)
    assert tir.loss(count, None, None, zero).item() == pytest.approx(expected.item(), rel=1e-4)

    omega_count = task_importance(count, kind, 3)
    tir.after_task(count)
    for name, omega in omega_count.items():
        assert torch.equal(tir.owners[name], (omega > omega_color[name]).to(torch.int16))
        assert torch.equal(tir.importance[name], torch.maximum(omega, omega_color[name]))


def two_tasks(tiny) -> tuple[TIR, Context]:
    tir = TIR(TIROptions(importance_samples=2, embedding_samples=4))
    color = context(tiny, 0, "color")
    for ctx in (color, context(tiny, 1, "count", model=color.model)):
        tir.before_task(ctx)
        nudge(ctx.model, ctx.task.index)
        tir.after_task(ctx)
    return tir, context(tiny, 2, "arithmetic", model=color.model)


def test_third_task_relaxes_each_element_by_its_own_owner(tiny):
    tir, arithmetic = two_tasks(tiny)
    tir.before_task(arithmetic)
    assert tir.loss(arithmetic, None, None, torch.tensor(0.0)).item() == 0.0  # theta* = end of the last task
    sims = tir.history[-1]
    assert len(sims) == 2 and sims == similarities(tir.embeddings + [tir.pending])
    assert 0 < min(sims) and max(sims) < 1  # products of sigmoids; their values are checked against similarities() above
    for name, omega in tir.importance.items():
        owners = tir.owners[name].long()
        expected = torch.where(owners == 0, omega * (1 - sims[0]), omega * (1 - sims[1]))
        assert torch.allclose(tir.relaxed[name], expected)
    assert {int(o.max()) for o in tir.owners.values()} == {0, 1}


def test_state_round_trip_gives_identical_similarities_and_penalty(tmp_path, tiny):
    tir, arithmetic = two_tasks(tiny)
    save_state_tree(tir.state_dict(), tmp_path / "state")
    restored = TIR(tir.options)
    restored.load_state_dict(load_state_tree(tmp_path / "state"))
    assert all(t.dtype == torch.int16 for t in restored.owners.values())
    for strategy in (tir, restored):
        strategy.before_task(arithmetic)
    assert restored.history == tir.history
    nudge(arithmetic.model, 5)
    zero = torch.tensor(0.0)
    original, copy_ = tir.loss(arithmetic, None, None, zero), restored.loss(arithmetic, None, None, zero)
    assert original.item() > 0 and torch.equal(original, copy_)

    save_state_tree(tir.state_dict(), tmp_path / "mid-task")  # pending embedding + relaxed Omega
    mid = TIR(tir.options)
    mid.load_state_dict(load_state_tree(tmp_path / "mid-task"))
    assert torch.equal(mid.loss(arithmetic, None, None, zero), original)
