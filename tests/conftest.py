"""Shared fixtures: a tiny, fast configuration of the embedded stream; two processes on gloo."""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _share_cores_among_workers() -> None:
    """Under pytest-xdist, each worker (and what it starts) gets its share of the CPUs.

    Set before torch is imported, so torch's pool and every subprocess read it: two workers
    of two threads each on two cores spin against each other (docs/RESULTS.md, "Two runs on
    one machine"), one thread each does not.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))


_share_cores_among_workers()


def pytest_collection_finish(session):
    """What collecting imported (torch, transformers, mcit: most of a test worker's objects) lives as
    long as the worker: frozen out of the garbage collector's reach, so its full collections scan only
    what the tests built since (0.44 s -> 0.20 s of collection over three tiny runs in a fresh process)."""
    gc.freeze()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_overrides(**extra: object) -> list[str]:
    """Overrides that shrink the default run to a couple of seconds (2 tasks + 1 eval-only, 2 base tasks)."""
    values = {
        "benchmark.tasks": "[color, count]",
        "benchmark.eval_only": "[arithmetic]",
        "benchmark.train_per_task": 48,
        "benchmark.eval_per_task": 12,
        "benchmark.base.tasks": "[describe, arithmetic]",
        "benchmark.base.samples_per_task": 32,
        "benchmark.base.train.epochs": 1,
        "train.epochs": 1,
        "train.lr": 1e-3,  # the tiny runs learn in one epoch at the lr the tests were written for
        "train.batch_size": 16,
        "eval.batch_size": 16,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture
def tiny_config():
    from mcit.config import load_config

    def make(**extra: object):
        return load_config(None, tiny_overrides(**extra))

    return make


def one_line_error(result) -> str:
    """The CLI's error line of a ``CliRunner`` result, asserting exit 2, one line, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def example_stream(directory, train_per_task: int, eval_per_task: int):
    """The example file stream (``examples/write_example_stream.py``) and a tiny checkpoint in ``directory/model``."""
    from mcit.data.synthetic.files import write_example_stream
    from mcit.models.hf import load_vlm

    write_example_stream(directory, train_per_task=train_per_task, eval_per_task=eval_per_task)
    model, processor = load_vlm("tiny")
    model.save_pretrained(directory / "model")
    processor.save_pretrained(directory / "model")
    return directory


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared CPU: torch's thread pool costs ~0.5 s a forward, one thread ~10 ms."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def largest_difference(a, b) -> float:
    """The largest absolute difference of two tensors of one shape, in fp32 (0 for empty ones)."""
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def on_two_gloo_processes(worker: Callable[[int], Any]) -> list[Any]:
    """``worker(rank)`` run in two spawned processes, with the environment a launcher gives them
    (``RANK``, ``WORLD_SIZE``, ``MASTER_PORT``, ...); returns what each returned, by rank.

    ``worker`` must be a module-level function (it is pickled by name); it joins the processes
    itself (``world_from_environment`` or ``init_process_group("gloo")``); the group is torn
    down after it returns.

    The processes are forked from a fork server that imported torch, transformers and mcit once
    (per test worker): a spawned process would import them again, about 3 s of CPU each (7 s
    where no bytecode is cached). The server is single-threaded, so forking it is safe where
    forking the test process (with its threads) would not be.
    """
    import torch.multiprocessing as mp

    fork_server()
    results = mp.Manager().dict()
    mp.start_processes(_gloo_process, args=(worker, free_port(), results), nprocs=2, join=True, start_method="forkserver")
    return [results[0], results[1]]


FORK_SERVER_PRELOAD = ["torch", "transformers", "mcit.runner", "mcit.sharding"]


def fork_server():
    """The ``forkserver`` multiprocessing context, its server preloading :data:`FORK_SERVER_PRELOAD`
    (read when the server starts: the first process this test worker starts from it)."""
    import multiprocessing

    multiprocessing.set_forkserver_preload(FORK_SERVER_PRELOAD)
    return multiprocessing.get_context("forkserver")


def _gloo_process(rank: int, worker: Callable[[int], Any], port: int, results) -> None:
    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        results[rank] = worker(rank)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
