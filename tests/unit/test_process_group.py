"""mcit.distributed: sharding, the launcher's environment, the shipped accelerate configs, and the
collectives on a real 2-process gloo group (torch.multiprocessing)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from conftest import on_two_gloo_processes
from mcit.data.collate import Batch
from mcit.data.sample import Sample
from mcit.distributed import SINGLE, World, torch_threads, world_from_environment
from mcit.errors import UserError
from mcit.strategies import Context, Strategy, TaskView
from mcit.training.feed import MicroBatch, weigh
from mcit.training.loop import _sum_over_processes, train
from mcit.training.settings import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@given(st.integers(0, 40), st.integers(1, 5))
def test_shards_are_contiguous_in_rank_order_and_balanced(n, size):
    items = list(range(n))
    shards = [World(rank, size).share(items) for rank in range(size)]
    assert [i for shard in shards for i in shard] == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_one_process_without_a_launcher(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world_from_environment() is SINGLE
    assert SINGLE.sum_counts([3, 4]) == [3, 4] and SINGLE.gather([1, 2]) == [1, 2] and SINGLE.broadcast("x") == "x"


@pytest.mark.parametrize(("variable", "engine"), [("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"), ("ACCELERATE_USE_MEGATRON_LM", "Megatron-LM")])
def test_a_sharding_engine_mcit_does_not_drive_is_refused(monkeypatch, variable, engine):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(variable, "true")
    with pytest.raises(UserError, match=engine):
        world_from_environment()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "FSDP version 1"),  # accelerate's default
        ({"FSDP_VERSION": "1"}, "FSDP version 1"),
        ({"FSDP_VERSION": "2", "FSDP_OFFLOAD_PARAMS": "true"}, "train.offload_method_state"),
        ({"FSDP_VERSION": "2", "FSDP_ACTIVATION_CHECKPOINTING": "true"}, "train.gradient_checkpointing"),
    ],
)
def test_fsdp_settings_mcit_does_not_honour_are_refused_before_any_process_group(monkeypatch, settings, message):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    for variable, value in settings.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(UserError, match=message):
        world_from_environment()
    assert not torch.distributed.is_initialized()


def test_accelerate_mixed_precision_is_refused_for_the_mcit_setting(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(UserError, match="train.mixed_precision"):
        world_from_environment()


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_accelerate_configs_validate(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type in ("MULTI_GPU", "FSDP") and config.num_processes >= 2
    if config.distributed_type == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2, "mcit shards with FSDP2 only"
        assert not config.fsdp_config["fsdp_offload_params"] and not config.fsdp_config["fsdp_activation_checkpointing"]
    assert config.mixed_precision == "no", "mcit's train.mixed_precision sets the precision"
    assert not config.use_cpu, "accelerate's CPU type starts one process"


def test_a_step_smaller_than_the_processes_is_refused_before_any_collective():
    model = torch.nn.Linear(2, 2)
    ctx = Context(model, TaskView(0, "t", []), 0, torch.device("cpu"), world=World(0, 2))
    data = [Sample(id="a", prompt="q", answer="a")]
    with pytest.raises(UserError, match="cannot be split over 2 processes"):
        train(ctx, data, Strategy(), TrainConfig(batch_size=1, epochs=1))


def _collectives(rank: int) -> dict:
    world = world_from_environment()
    # Answer tokens: rank 0 has micro-batches of 3 and 1 tokens, rank 1 one of 4: shares over all 8.
    labels = {0: [torch.tensor([[1, 1, 1]]), torch.tensor([[1, -100, -100]])], 1: [torch.tensor([[1, 1, 1, 1]])]}[rank]
    micro = [MicroBatch(Batch({}, lab, ()), int((lab != -100).sum())) for lab in labels]
    weights = [m.weight for m in weigh(micro, world)]
    # Gradients: "both" has one on each rank, "one" on rank 1 only, "none" on neither.
    both, one, none = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    both.grad = torch.full((2,), float(rank + 1))
    if rank == 1:
        one.grad = torch.tensor([5.0, 6.0])
    loss = _sum_over_processes(world, [both, one, none], torch.tensor(0.25 * (rank + 1)))
    return {
        "weights": weights, "both": both.grad.tolist(), "one": one.grad.tolist(), "none": none.grad,
        "loss": float(loss), "gather": world.gather([f"r{rank}a", f"r{rank}b"]), "broadcast": world.broadcast(f"from {rank}"),
    }  # fmt: skip


@pytest.mark.slow
def test_collectives_on_two_gloo_processes():
    zero, one = on_two_gloo_processes(_collectives)
    assert zero["weights"] == [3 / 8, 1 / 8] and one["weights"] == [4 / 8]
    for result in (zero, one):
        assert result["both"] == [3.0, 3.0] and result["one"] == [5.0, 6.0]
        assert result["none"] is None, "a parameter without a gradient on any process must keep none (AdamW skips it)"
        assert result["loss"] == pytest.approx(0.75)
        assert result["gather"] == ["r0a", "r0b", "r1a", "r1b"] and result["broadcast"] == "from 0"


@pytest.mark.parametrize(
    ("cpus", "local_processes", "expected"), [(2, None, 1), (1, None, 1), (16, None, 8), (16, "2", 4), (16, "4", 2), (4, "8", 1)]
)
def test_auto_threads_are_half_the_cpus_shared_among_the_local_processes(monkeypatch, cpus, local_processes, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    if local_processes is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local_processes)
    assert torch_threads("auto") == expected
    assert torch_threads(3) == 3  # a number is taken as it is


def test_a_run_gives_torch_the_threads_its_setting_resolves_to(monkeypatch, tmp_path, tiny_config):
    from mcit.runner import Runner

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(6)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    try:
        results = Runner(tiny_config(**{"threads": "auto", "benchmark.tasks": "[color]"}), tmp_path / "run").run()
    finally:
        torch.set_num_threads(before)
    assert results["environment"]["threads"] == 3
