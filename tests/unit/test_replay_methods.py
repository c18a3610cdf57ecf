"""Replay family in isolation: buffer selectors, A-GEM's projection, DGG's guidance."""

from __future__ import annotations

import random

import pytest
import torch

from digit_model import DigitCollator, DigitLM
from mcit.data.sample import Sample
from mcit.data.synthetic.tasks import TASKS
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import Context, TaskView
from mcit.strategies._buffer import BUFFER_SELECTORS, BufferOptions, ReplayBuffer, quota
from mcit.strategies.agem import AGEM, AGEMOptions, agem_project_
from mcit.strategies.dgg import DGGOptions, DynamicGradientGuidance, scales
from mcit.strategies.er import EROptions, ExperienceReplay


def samples(task: str, count: int) -> list[Sample]:
    """Text-only samples whose prompt and answer are single digits (see TinyLM)."""
    return [Sample(f"{task}-{i}", str(i % 7), str((i * 3) % 7), skill=task) for i in range(count)]


def select(name, buffers, task, data, *, per_task=5, capacity=10, seen=0, seed="s"):
    return BUFFER_SELECTORS.get(name)(
        buffers, task, data, per_task=per_task, capacity=capacity, seen=seen, seed=seed
    )


def ids(buffer: list[Sample]) -> list[str]:
    return [s.id for s in buffer]


# -- buffer selectors ---------------------------------------------------------------------


def test_random_selector_keeps_per_task_samples_and_is_exactly_ers_historic_draw():
    a, b = samples("a", 30), samples("b", 3)
    first = select("random", {}, "a", a, per_task=5, seed="er/7")
    assert ids(first["a"]) == ids(random.Random("er/7").sample(a, 5))
    second = select("random", first, "b", b, per_task=5, seed="er/8")
    assert list(second) == ["a", "b"] and ids(second["a"]) == ids(first["a"]) and len(second["b"]) == 3
    assert list(first) == ["a"], "the input buffers were modified"
    assert ids(select("random", {}, "a", a, seed="er/7")["a"]) == ids(first["a"])
    assert ids(select("random", {}, "a", a, seed="er/9")["a"]) != ids(first["a"])


def test_er_default_buffer_is_unchanged_by_the_selector_refactor():
    color = TASKS.get("color").generate(40, 0, "train")
    er = ExperienceReplay()
    ctx = Context(torch.nn.Linear(1, 1), TaskView(0, "color", color), seed=123, device=torch.device("cpu"))
    er.after_task(ctx)
    assert ids(er.buffers["color"]) == ids(random.Random("er/123").sample(list(color), min(200, len(color))))
    assert er.options.selector == "random" and er.options.buffer_per_task == 200


def test_reservoir_fills_then_holds_capacity_and_is_deterministic():
    a, b = samples("a", 6), samples("b", 20)
    first = select("reservoir", {}, "a", a, capacity=10, seen=0)
    assert ids(first["a"]) == ids(a)  # under capacity: everything streamed so far
    second = select("reservoir", first, "b", b, capacity=10, seen=6)
    assert sum(len(v) for v in second.values()) == 10 and list(second) == ["a", "b"]
    assert second == select("reservoir", first, "b", b, capacity=10, seen=6)
    assert set(ids(second["a"])) <= set(ids(a)) and set(ids(second["b"])) <= set(ids(b))


def test_reservoir_keeps_each_streamed_sample_with_equal_probability():
    a, b = samples("a", 100), samples("b", 300)
    kept_from_a, kept_late_b, kept_early_b = [], [], []
    for seed in range(300):
        buffers = select("reservoir", {}, "a", a, capacity=40, seen=0, seed=f"r/{seed}/a")
        buffers = select("reservoir", buffers, "b", b, capacity=40, seen=100, seed=f"r/{seed}/b")
        assert sum(len(v) for v in buffers.values()) == 40
        kept_from_a.append(len(buffers["a"]))
        b_positions = [int(s.id.split("-")[1]) for s in buffers["b"]]
        kept_early_b.append(sum(p < 150 for p in b_positions))
        kept_late_b.append(sum(p >= 150 for p in b_positions))
    mean = lambda values: sum(values) / len(values)
    assert mean(kept_from_a) == pytest.approx(40 * 100 / 400, abs=0.8)  # proportional, not equal shares
    assert mean(kept_early_b) == pytest.approx(mean(kept_late_b), abs=1.2)


def test_per_task_quota_splits_capacity_and_shrinks_older_buffers_to_prefixes():
    buffers: dict = {}
    sizes = []
    for index, name in enumerate(["a", "b", "c", "d"]):
        previous = buffers
        buffers = select("per_task_quota", buffers, name, samples(name, 20), capacity=10, seed=f"q/{index}")
        sizes.append([len(buffers[n]) for n in buffers])
        for old in previous:
            assert ids(buffers[old]) == ids(previous[old])[: len(buffers[old])]
    assert sizes == [[10], [5, 5], [4, 3, 3], [3, 3, 2, 2]]
    small = select("per_task_quota", {}, "x", samples("x", 3), capacity=10)
    assert len(small["x"]) == 3
    assert [quota(10, n, i) for n in range(1, 13) for i in range(n)] == [
        10 // n + (i < 10 % n) for n in range(1, 13) for i in range(n)
    ]


def test_unknown_selector_names_the_valid_ones():
    with pytest.raises(ValueError, match="per_task_quota, random, reservoir"):
        EROptions(selector="resevoir")
    with pytest.raises(ValueError, match="Did you mean 'reservoir'"):
        AGEMOptions(selector="resevoir")


def test_replay_buffer_state_round_trip_keeps_order_and_stream_position(tmp_path):
    memory = ReplayBuffer(BufferOptions(selector="reservoir", capacity=8), purpose="t")
    memory.add_task("a", samples("a", 5), 1)
    memory.add_task("b", samples("b", 9), 2)
    save_state_tree(memory.state_dict(), tmp_path / "s")
    restored = ReplayBuffer(BufferOptions(selector="reservoir", capacity=8), purpose="t")
    restored.load_state_dict(load_state_tree(tmp_path / "s"))
    # The state holds references; a resumed run reads them back through its sample lookup.
    stream = {name: {s.id: s for s in samples(name, count)} for name, count in (("a", 5), ("b", 9))}

    def lookup(task: str, sample_id: str) -> Sample:
        return stream[task][sample_id]

    assert restored.seen == 14 and list(restored.buffers(lookup)) == ["a", "b"]
    assert ids(restored.samples(lookup)) == ids(memory.samples())
    memory.add_task("c", samples("c", 9), 3)
    restored.add_task("c", samples("c", 9), 3, lookup)
    assert ids(restored.samples()) == ids(memory.samples())


def test_er_with_a_total_capacity_selector_replays_at_most_capacity():
    er = ExperienceReplay(EROptions(selector="per_task_quota", capacity=6))
    for index, name in enumerate(["a", "b", "c"]):
        view = TaskView(index, name, samples(name, 10))
        ctx = Context(torch.nn.Linear(1, 1), view, seed=index, device=torch.device("cpu"))
        assert len(er.train_data(ctx, ctx.task.train)) == 10 + min(6, 10 * index)
        er.after_task(ctx)
    assert [len(b) for b in er.buffers.values()] == [2, 2, 2]


# -- A-GEM --------------------------------------------------------------------------------


def projected_by_formula(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's rule written out (Chaudhry et al. 2019, eq. 11) on flat vectors."""
    dot = torch.dot(g, g_ref)
    return g - dot / torch.dot(g_ref, g_ref) * g_ref if dot < 0 else g


def agem_projected(g: torch.Tensor, g_ref: torch.Tensor, split: list[int]) -> torch.Tensor:
    """``agem_project_`` on ``g`` and ``g_ref`` cut into tensors of sizes ``split``, flattened back."""
    grads = [t.clone() for t in g.split(split)]
    agem_project_(grads, list(g_ref.split(split)))
    return torch.cat(grads)


def test_agem_projection_on_a_two_parameter_example():
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    projected = agem_projected(g, g_ref, [1, 1])
    # g.g_ref = -1, ||g_ref||^2 = 2: g - (-1/2) g_ref = [0.5, 0.5]
    assert torch.allclose(projected, torch.tensor([0.5, 0.5]))
    assert torch.dot(projected, g_ref).abs() < 1e-7
    aligned = torch.tensor([1.0, 1.0])
    assert torch.equal(agem_projected(aligned, torch.tensor([1.0, -0.5]), [2]), aligned)  # g.g_ref = 0.5 >= 0
    orthogonal = torch.tensor([1.0, 1.0])
    assert torch.equal(agem_projected(orthogonal, torch.tensor([1.0, -1.0]), [1, 1]), orthogonal)


def test_agem_projection_of_tensor_lists_is_the_projection_of_the_concatenated_vector():
    generator = torch.Generator().manual_seed(0)
    g_ref = torch.randn(11, generator=generator)
    g = -0.7 * g_ref + torch.randn(11, generator=generator)  # conflicting by construction
    assert torch.dot(g, g_ref) < 0
    projected = agem_projected(g, g_ref, [3, 6, 2])
    assert torch.allclose(projected, projected_by_formula(g, g_ref), rtol=1e-5, atol=1e-6)
    assert torch.dot(projected, g_ref).abs() < 1e-5


def gradient_of(model, collator, batch_samples) -> torch.Tensor:
    from mcit.losses import answer_loss

    model.zero_grad(set_to_none=True)
    batch = collator.train_batch(batch_samples)
    answer_loss(model(**batch.inputs).logits, batch.labels).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def test_agem_hook_leaves_a_non_conflicting_gradient_unchanged():
    model, collator = DigitLM(vocab=8), DigitCollator()
    current, memory = samples("new", 4), samples("old", 3)
    g_ref = gradient_of(model, collator, memory)
    g = gradient_of(model, collator, current)
    assert torch.dot(g, g_ref) > 0, "this case is about gradients that do not conflict"
    agem = AGEM(AGEMOptions(buffer_per_task=3, reference_batch_size=16))
    ctx = Context(model, TaskView(0, "old", memory), seed=1, device=torch.device("cpu"), collator=collator)
    agem.after_backward(ctx, None)  # empty memory: nothing happens
    assert torch.equal(flat_grad(model), g)
    agem.after_task(ctx)

    ctx.task = TaskView(1, "new", current)
    model.train()
    agem.after_backward(ctx, None)
    assert len(collator.batches) == 3, "the hook computed a reference gradient on the memory"
    assert torch.equal(flat_grad(model), g)
    assert model.training


def test_agem_hook_projects_a_conflicting_gradient_onto_the_memory_gradients_normal_plane():
    model, collator = DigitLM(vocab=8), DigitCollator()
    # Same prompt, different answers: the memory gradient points against the current one.
    current = [Sample(f"new-{i}", "1", "2", skill="new") for i in range(4)]
    memory = [Sample(f"old-{i}", "1", "5", skill="old") for i in range(3)]
    g_ref = gradient_of(model, collator, memory)
    g = gradient_of(model, collator, current)
    assert torch.dot(g, g_ref) < 0, "this case is about conflicting gradients"
    agem = AGEM(AGEMOptions(buffer_per_task=3, reference_batch_size=16))
    ctx = Context(model, TaskView(0, "old", memory), seed=1, device=torch.device("cpu"), collator=collator)
    agem.after_task(ctx)
    ctx.task = TaskView(1, "new", current)
    agem.after_backward(ctx, None)
    after = flat_grad(model)
    assert not torch.allclose(after, g, atol=1e-4), "the projection changed the gradient"
    assert torch.allclose(after, projected_by_formula(g, g_ref), rtol=1e-5, atol=1e-7)
    assert torch.dot(after, g_ref).abs() < 1e-5


def test_agem_reference_batch_depends_only_on_seed_and_step():
    memory = samples("old", 20)
    drawn = []
    for _ in range(2):
        model, collator = DigitLM(vocab=8), DigitCollator()
        agem = AGEM(AGEMOptions(reference_batch_size=4))
        ctx = Context(model, TaskView(0, "old", memory), seed=5, device=torch.device("cpu"), collator=collator)
        agem.after_task(ctx)
        for step in (0, 1, 0):
            ctx.step = step
            gradient_of(model, collator, samples("new", 2))
            agem.after_backward(ctx, None)
        drawn.append(collator.batches[1::2])
    assert drawn[0] == drawn[1] and drawn[0][0] == drawn[0][2] and drawn[0][0] != drawn[0][1]
    assert all(len(b) == 4 for b in drawn[0])


# -- DGG ----------------------------------------------------------------------------------


def test_guidance_is_the_displacement_clipped_to_the_gradient_norm():
    d = [torch.tensor([3.0, 4.0])]  # ||d|| = 5; the guidance is d * scale
    small, large = [torch.tensor([0.6, 0.8])], [torch.tensor([30.0, 40.0])]
    assert scales(d, small) == [pytest.approx(0.2)]  # ||g|| / ||d|| = 1/5
    assert scales(d, large) == [1.0]  # min(1, 50/5) = 1
    assert scales([torch.zeros(2)], small) == [None]


def test_global_and_per_tensor_norms_differ():
    d = [torch.tensor([3.0, 4.0]), torch.tensor([1.0, 0.0])]
    g = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])]
    assert scales(d, g, "global") == [pytest.approx(1 / 26**0.5)] * 2  # one scale from the norms over both tensors
    assert scales(d, g, "per_tensor") == [pytest.approx(1 / 5), 0.0]
    assert scales([torch.zeros(2), d[0]], [g[0], g[0]], "per_tensor")[0] is None


def dgg_setup(alpha: float, seed: int = 0, **options):
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ctx = Context(model, TaskView(0, "t", []), seed=seed, device=torch.device("cpu"))
    dgg = DynamicGradientGuidance(DGGOptions(alpha=alpha, **options))
    dgg.before_task(ctx)  # theta* = 0
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))  # d = [1, 2]
    return dgg, ctx, model


def set_grad(model, values) -> None:
    model.weight.grad = torch.tensor([values])


def test_alpha_zero_never_and_alpha_one_always_changes_the_gradient():
    for alpha, changes in ((0.0, False), (1.0, True)):
        dgg, ctx, model = dgg_setup(alpha)
        for step in range(50):
            ctx.step = step
            set_grad(model, [0.3, -0.1])
            dgg.after_backward(ctx, None)
            assert (not torch.equal(model.weight.grad, torch.tensor([[0.3, -0.1]]))) is changes


def test_guidance_pulls_theta_toward_theta_star_after_an_sgd_step():
    dgg, ctx, model = dgg_setup(1.0)
    theta_star = torch.zeros(1, 2)
    g = [0.3, -0.1]
    set_grad(model, g)
    dgg.after_backward(ctx, None)
    d, grad = torch.tensor([[1.0, 2.0]]), torch.tensor([g])
    expected = grad + d * min(1.0, grad.norm().item() / d.norm().item())
    assert torch.allclose(model.weight.grad, expected)

    lr = 0.5
    before = model.weight.detach().clone()
    plain_step = before - lr * grad
    guided_step = before - lr * model.weight.grad
    assert (guided_step - theta_star).norm() < (plain_step - theta_star).norm()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    optimizer.step()
    assert torch.allclose(model.weight.detach(), guided_step)


def test_displacement_is_zero_at_the_start_of_a_task():
    dgg, ctx, model = dgg_setup(1.0)
    dgg.before_task(ctx)  # new task: theta* = current theta
    set_grad(model, [0.3, -0.1])
    dgg.after_backward(ctx, None)
    assert torch.equal(model.weight.grad, torch.tensor([[0.3, -0.1]]))


def test_bernoulli_gate_is_seeded_by_task_seed_and_step():
    def gates(seed: int) -> list[bool]:
        dgg, ctx, _ = dgg_setup(0.3, seed=seed)
        out = []
        for step in range(200):
            ctx.step = step
            out.append(dgg.gate(ctx))
        return out

    first = gates(4)
    assert first == gates(4) and first != gates(5)
    assert 0.2 <= sum(first) / len(first) <= 0.4


def test_alpha_per_task_overrides_alpha_by_task_index():
    dgg = DynamicGradientGuidance(DGGOptions(alpha=0.2, alpha_per_task=[0.05, 0.1]))
    assert [dgg.rate(i) for i in range(3)] == [0.05, 0.1, 0.2]
    with pytest.raises(ValueError):
        DGGOptions(alpha_per_task=[0.1, 1.5])
    with pytest.raises(ValueError):
        DGGOptions(norm="layer")


def test_dgg_state_round_trip(tmp_path):
    dgg, ctx, model = dgg_setup(1.0)
    save_state_tree(dgg.state_dict(), tmp_path / "s")
    restored = DynamicGradientGuidance(DGGOptions(alpha=1.0))
    restored.load_state_dict(load_state_tree(tmp_path / "s"))
    assert restored.anchor.keys() == dgg.anchor.keys()
    assert all(torch.equal(restored.anchor[k], dgg.anchor[k]) for k in dgg.anchor)
    guided = []
    for strategy in (dgg, restored):
        set_grad(model, [0.3, -0.1])
        strategy.after_backward(ctx, None)
        guided.append(model.weight.grad.clone())
    assert torch.equal(guided[0], guided[1])
