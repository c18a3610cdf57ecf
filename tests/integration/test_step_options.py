"""The loop's accelerator options: micro-batches, DataLoader workers, bf16, master weights, checkpointing, loss reads."""

from __future__ import annotations

import pytest
import torch
from test_run import Interrupt, interrupting_step, smallest_chain

import mcit.runner
import mcit.training.loop
from digit_model import DigitCollator, DigitLM
from mcit.data.sample import Sample
from mcit.errors import UserError
from mcit.models.hf import load_vlm
from mcit.run_setup import Progress
from mcit.runner import Runner
from mcit.store import RunStore
from mcit.strategies import STRATEGIES, Context, Strategy, StrategyChain, TaskView
from mcit.training.loop import train
from mcit.training.precision import MasterWeights
from mcit.training.settings import TrainConfig

pytestmark = pytest.mark.slow


def weights(run_dir, count: int = 2) -> dict[str, torch.Tensor]:
    state, _ = RunStore(run_dir).load_checkpoint(f"task-{count:03d}")
    return state["model"]


def leaves(tree, prefix: str = "") -> dict[str, object]:
    """Every leaf of a state tree by its path (tensors, numbers, names)."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in leaves(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in leaves(value, f"{prefix}/{i}").items()}
    return {prefix: tree}


def trained_state(run_dir, count: int = 2) -> dict[str, object]:
    """The trainable weights and the strategy state (where eproj keeps its projectors) of a task checkpoint."""
    state, _ = RunStore(run_dir).load_checkpoint(f"task-{count:03d}")
    return leaves({"model": state["model"], "strategy": state["strategy"]})


@pytest.mark.parametrize("method", STRATEGIES.names())
def test_every_method_accumulates_micro_batches_to_the_whole_batch(tmp_path, tiny_config, method):
    """Two micro-batches of 8 per step give the run of one batch of 16, for every method.

    The accumulated gradient is the whole batch's up to float summation order (the gradient
    itself is compared at 1e-6 in ``test_micro_batch_gradients_equal_the_whole_batch``).
    After 6 AdamW steps the matrix is the same and 99.9% of the weights (and strategy
    tensors) agree to 1e-4 relative / 1e-6 absolute; AdamW divides by the root of the second
    moment, so an entry whose gradient is near 0 can turn a 1e-7 difference into a visible
    one (up to 3e-4 seen, with dgg), bounded here by one AdamW step (lr 1e-3; relative for
    state above 1, such as importances). Counting a penalty once per micro-batch moves most
    entries by far more.
    """
    common = {"method": smallest_chain(method), "benchmark.base": "null", "keep_checkpoints": "null"}
    whole = Runner(tiny_config(**common), tmp_path / "whole").run()
    micro = Runner(tiny_config(**common, **{"train.micro_batch_size": 8}), tmp_path / "micro").run()
    assert micro["matrix"] == whole["matrix"]
    a, b = trained_state(tmp_path / "whole"), trained_state(tmp_path / "micro")
    assert a.keys() == b.keys()
    first = trained_state(tmp_path / "whole", 1)
    assert any(
        isinstance(v, torch.Tensor) and (k not in first or not torch.equal(v, first[k])) for k, v in a.items()
    ), "task 2 changed the trained state"
    floats = [k for k, v in a.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    integers = [k for k, v in a.items() if isinstance(v, torch.Tensor) and not v.is_floating_point()]
    for key in a.keys() - set(floats) - set(integers):
        assert b[key] == a[key], key
    x = torch.cat([a[k].flatten().double() for k in floats])
    y = torch.cat([b[k].flatten().double() for k in floats])
    # at most one AdamW step's size at lr 1e-3 for a weight; relative for larger state (an importance of 100)
    assert ((x - y).abs() <= 1e-3 * x.abs().clamp(min=1)).all()
    assert (~torch.isclose(y, x, rtol=1e-4, atol=1e-6)).double().mean() <= 1e-3
    if integers:  # e.g. tir's owner of each weight: the argmax of two importances, a tie where both are ~0
        i, j = torch.cat([a[k].flatten() for k in integers]), torch.cat([b[k].flatten() for k in integers])
        assert (i != j).double().mean() <= 1e-3


def test_micro_batch_gradients_equal_the_whole_batch():
    """Answers of 1 and of 9 words: the token-weighted micro-batch losses give the whole batch's gradient."""
    from mcit.data.collate import Collator
    from mcit.distributed import SINGLE
    from mcit.training.feed import step_loader, weigh, with_samples

    model, processor = load_vlm("tiny")
    samples = [
        Sample(f"s{i}", f"Say {i}.", " ".join(["red"] * (1 if i < 2 else 9)), skill="a") for i in range(6)
    ]
    ctx = Context(model, TaskView(0, "a", samples), seed=0, device=torch.device("cpu"), collator=Collator(processor))
    settings = {}
    for micro in (0, 2):
        model.zero_grad(set_to_none=True)
        (collated,) = list(step_loader(ctx.collator, samples, [list(range(6))], micro, 0, False))
        micro_batches = weigh(with_samples(collated, samples, list(range(6)), ctx.device), SINGLE)
        assert len(micro_batches) == (3 if micro else 1)
        if micro:
            assert sorted(round(m.weight, 6) for m in micro_batches) != [round(1 / 3, 6)] * 3, "unequal token counts"
        loss = mcit.training.loop._forward_backward(ctx, Strategy(), micro_batches, TrainConfig(micro_batch_size=micro))
        settings[micro] = (float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    (whole_loss, whole), (micro_loss, micro) = settings[0], settings[2]
    assert micro_loss == pytest.approx(whole_loss, rel=1e-6)
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], rtol=1e-5, atol=1e-6, msg=name)


def test_dataloader_workers_give_the_same_run(tmp_path, tiny_config):
    common = {"benchmark.base": "null", "method": "[er]"}
    inline = Runner(tiny_config(**common), tmp_path / "inline").run()
    workers = Runner(tiny_config(**common, **{"train.num_workers": 2}), tmp_path / "workers").run()
    assert workers["matrix"] == inline["matrix"]
    a, b = weights(tmp_path / "inline"), weights(tmp_path / "workers")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_autocast_runs_the_forward_in_bf16_and_keeps_fp32_weights(tmp_path, tiny_config, monkeypatch):
    seen: list[torch.dtype] = []
    real_train = mcit.runner.train

    def spy(ctx, *args, **kwargs):
        linear = next(m for m in ctx.model.modules() if isinstance(m, torch.nn.Linear))
        handle = linear.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
        try:
            return real_train(ctx, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(mcit.runner, "train", spy)
    config = tiny_config(**{"benchmark.base": "null", "train.mixed_precision": "bf16", "method": "[ewc]"})
    results = Runner(config, tmp_path / "run").run()
    assert results["complete"] and seen and set(seen) == {torch.bfloat16}
    state = weights(tmp_path / "run")
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in state.values())
    assert all(row["final_loss"] == row["final_loss"] for row in results["rows"])


def test_master_weights_keep_updates_that_bf16_rounds_away():
    """AdamW steps of ~1e-4 on a bf16 weight of 1.0 (spacing 2**-7): lost without fp32 masters, kept with."""

    def run(enabled: bool) -> tuple[float, float]:
        weight = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
        masters = MasterWeights([weight], enabled)
        optimizer = torch.optim.AdamW(list(masters), lr=1e-4, weight_decay=0.0)
        for _ in range(100):
            weight.grad = torch.ones_like(weight)
            masters.gradients_to_masters()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            masters.masters_to_model()
        updated = next(iter(masters))
        return float(weight.detach()), float(updated.detach())

    assert run(False) == (1.0, 1.0)  # each step's 1e-4 is below half of bf16's spacing at 1.0
    weight, master = run(True)
    assert master == pytest.approx(0.99, abs=1e-5)  # 100 AdamW steps of lr 1e-4, in fp32
    assert weight == float(torch.tensor(master).bfloat16()) == 0.98828125  # the master, rounded to bf16


def test_bf16_weights_resume_mid_task_to_the_uninterrupted_run(tmp_path, tiny_config):
    """The fp32 master weights travel in the mid-task checkpoint; the rounded bf16 weights could not restore them."""
    config = tiny_config(**{"benchmark.base": "null", "model.dtype": "bfloat16", "train.checkpoint_every": 1})
    straight = Runner(config, tmp_path / "straight").run()
    with pytest.raises(Interrupt):
        Runner(config, tmp_path / "resumed", interrupting_step("task 2/", 2)).run()
    resumed = Runner(config, tmp_path / "resumed").run()
    assert resumed["matrix"] == straight["matrix"]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(t.dtype == torch.bfloat16 for t in a.values())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_with_gradient_checkpointing_matches_one_without(tmp_path, tiny_config):
    common = {"benchmark.base": "null"}
    plain = Runner(tiny_config(**common), tmp_path / "plain").run()
    checkpointed = Runner(tiny_config(**common, **{"train.gradient_checkpointing": "true"}), tmp_path / "checkpointed").run()
    assert checkpointed["matrix"] == plain["matrix"]
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "checkpointed")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def checkpointing_on(model) -> bool:
    """transformers 5 renames ``is_gradient_checkpointing`` to ``is_activation_checkpointing``."""
    value = getattr(model, "is_activation_checkpointing", None)
    return model.is_gradient_checkpointing if value is None else value


def one_batch_gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
    model, processor = load_vlm("tiny")
    from mcit.data.collate import Collator
    from mcit.losses import answer_loss

    samples = [Sample(f"s{i}", f"What is {i} plus {i}?", str(2 * i), skill="arithmetic") for i in range(4)]
    batch = Collator(processor).train_batch(samples)
    model.train()
    with mcit.training.loop.gradient_checkpointing(model, checkpointing):
        assert checkpointing_on(model) == checkpointing
        answer_loss(model(**batch.inputs).logits, batch.labels).backward()
    assert not checkpointing_on(model)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients():
    plain, checkpointed = one_batch_gradients(False), one_batch_gradients(True)
    assert plain.keys() == checkpointed.keys() and plain
    for key in plain:
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-5, atol=1e-7, msg=key)


def digit_context(model) -> tuple[Context, list[Sample]]:
    samples = [Sample(f"a-{i}", str(i % 10), str((3 * i) % 10), skill="a") for i in range(20)]
    return Context(model, TaskView(0, "a", samples), seed=0, device=torch.device("cpu"), collator=DigitCollator()), samples


def test_gradient_checkpointing_on_a_model_without_it_is_refused():
    ctx, samples = digit_context(DigitLM())
    with pytest.raises(UserError, match="does not support gradient checkpointing"):
        train(ctx, samples, Strategy(), TrainConfig(gradient_checkpointing=True))


def test_the_loss_is_read_every_loss_every_steps_and_at_the_end():
    ctx, samples = digit_context(DigitLM())
    reads: list[tuple[int, float | None]] = []
    stats = train(ctx, samples, Strategy(), TrainConfig(epochs=1, batch_size=4, loss_every=2),
                  on_step=lambda step, steps, loss: reads.append((step, loss)))  # fmt: skip
    assert [step for step, _ in reads] == [1, 2, 3, 4, 5]
    assert [step for step, loss in reads if loss is not None] == [2, 4, 5]
    assert stats.final_loss == reads[-1][1]


class NanFromStep(Strategy):
    def __init__(self, step: int) -> None:
        self.step = step

    def loss(self, ctx, batch, outputs, loss):
        return loss * float("nan") if ctx.task.index >= 1 and ctx.step >= self.step else loss


def test_a_nonfinite_loss_is_caught_before_any_checkpoint_between_reads(tmp_path, tiny_config, monkeypatch):
    """loss_every=10 reads rarely, but a checkpoint forces a read: the NaN of step 2 never reaches a checkpoint."""
    monkeypatch.setattr(mcit.runner, "build_strategy", lambda config: StrategyChain([("nan", NanFromStep(1))]))
    saved: list[int] = []
    real_save = RunStore.save_checkpoint

    def spy(self, name, state, meta, *rest):
        if name == "partial":
            saved.append(state["train"]["step"])
            assert all(torch.isfinite(t).all() for t in state["model"].values())
        return real_save(self, name, state, meta, *rest)

    monkeypatch.setattr(RunStore, "save_checkpoint", spy)
    config = tiny_config(**{"benchmark.base": "null", "train.checkpoint_every": 1, "train.loss_every": 10})
    with pytest.raises(mcit.training.loop.NonFiniteLossError, match=r"task 'count', step 2/3: the loss is nan"):
        Runner(config, tmp_path / "run", Progress()).run()
    assert saved == [1, 2, 1], "task 1 checkpointed steps 1 and 2, task 2 its step 1; its NaN step 2 was not saved"
    store = RunStore(tmp_path / "run")
    assert [row["after"] for row in store.read_results()["rows"]] == ["color"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mid_task_progress_carries_the_cuda_rng_state():
    model = DigitLM().cuda()
    ctx, samples = digit_context(model)
    ctx.device = torch.device("cuda")
    progress: list[dict] = []
    train(ctx, samples, Strategy(), TrainConfig(epochs=1, batch_size=4, checkpoint_every=2), on_checkpoint=progress.append)
    assert progress and len(progress[0]["cuda_rng"]) == torch.cuda.device_count()
