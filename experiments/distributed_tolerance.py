"""Can the 2-process test's tolerance tell a right distributed step from a wrong one?

Usage: .venv/bin/python experiments/distributed_tolerance.py [--engine ddp|fsdp] [--out runs/distributed-tolerance]

Runs the stream of ``tests/integration/test_distributed.py`` (its base model, tasks and
settings) for some of its methods in this process, then several times with two processes
through ``accelerate launch``: as built, and with a plausible bug patched in each time.

- ``--engine ddp`` (``configs/accelerate/ddp-cpu.yaml``; seqft, si, agem): each process's
  mean loss weighted equally instead of by its share of the answer tokens (what a plain
  average over processes does); SI's record of the penalty gradient left unsummed over the
  processes; and, as a check, A-GEM's reference batch computed whole on every process
  instead of split.
- ``--engine fsdp`` (``configs/accelerate/fsdp-cpu.yaml``; seqft, ewc, si, er+dgg, agem):
  FSDP's default of averaging the gradients over the processes; the penalty on each
  process's shards not divided by its share of the step's weights; and the penalty's
  gradient handed to autograd as views of the vector SI records (FSDP then adds the task
  gradient into it: the bug this was built with at first).

Prints, for each, the share of weights and strategy tensors within 1e-4 relative / 1e-6
absolute and within 1e-2 / 1e-4 (the test's two tolerances), the largest difference, and the
accuracy matrices. The test asks for at least 99% close.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from test_distributed import BASE_STAGE, METHODS, model_and_strategy, stream_overrides

from conftest import tiny_overrides
from mcit.config import load_config
from mcit.distributed import SINGLE
from mcit.runner import Runner
from mcit.store import RunStore

DDP_MUTATIONS = {
    "as built": "",
    "equal share per process": """
        import mcit.training.loop as loop
        from mcit.training.feed import MicroBatch
        def weigh(micro_batches, world):  # each process's token mean counts 1/size, whatever its tokens
            local = sum(m.tokens for m in micro_batches)
            return [MicroBatch(m.batch, m.tokens, m.tokens / local / world.size) for m in micro_batches]
        loop.weigh = weigh
    """,
    "si penalty gradient unsummed": """
        from mcit.distributed import SINGLE
        from mcit.strategies.si import SI
        original = SI.after_backward
        def after_backward(self, ctx, batch):  # record this process's share of the penalty gradient only
            world, ctx.world = ctx.world, SINGLE
            try:
                original(self, ctx, batch)
            finally:
                ctx.world = world
        SI.after_backward = after_backward
    """,
    "agem reference whole": """
        import dataclasses
        import mcit.strategies.agem as agem
        from mcit.distributed import SINGLE
        original = agem._reference_gradient
        def reference_gradient(ctx, params, samples):  # every process computes the whole reference batch
            return original(dataclasses.replace(ctx, world=SINGLE), params, samples)
        agem._reference_gradient = reference_gradient
    """,
}
FSDP_MUTATIONS = {
    "as built": "",
    "gradients averaged": """
        from torch.distributed.fsdp import FSDPModule
        FSDPModule.set_gradient_divide_factor = lambda self, factor: None  # keep FSDP's default: the mean over processes
    """,
    "penalty not divided by share": """
        from mcit.strategies._anchor import Anchor
        original = Anchor.penalty
        def penalty(self, ctx, scale=1.0, record_gradients=False):  # each process's shards' part weighted by its share
            weight, ctx.shard_weight = ctx.shard_weight, 1.0
            try:
                return original(self, ctx, scale, record_gradients)
            finally:
                ctx.shard_weight = weight
        Anchor.penalty = penalty
    """,
    "penalty gradient handed over as views": """
        from mcit.strategies._penalty import PenaltyVectors
        PenaltyVectors.hand_over_copy = property(lambda self: False, lambda self, value: None)
    """,
}
ENGINES = {
    "ddp": ("ddp-cpu.yaml", ["seqft", "si", "agem"], DDP_MUTATIONS),
    "fsdp": ("fsdp-cpu.yaml", ["seqft", "ewc", "si", "er+dgg", "agem"], FSDP_MUTATIONS),
}
TOLERANCES = ((1e-4, 1e-6), (1e-2, 1e-4))
DRIVER = """
import json, sys
from pathlib import Path
{mutation}
from mcit.config import load_config
from mcit.distributed import world_from_environment
from mcit.runner import Runner
out, methods, overrides = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]
world = world_from_environment()
for index, method in enumerate(methods):
    Runner(load_config(None, [*overrides, f"method={{method}}"]), out / str(index), world=world).run()
"""


def compare(single: Path, distributed: Path) -> tuple[list[float], float]:
    """The share of entries close at each of :data:`TOLERANCES`, and the largest difference."""
    ours, theirs = model_and_strategy(single), model_and_strategy(distributed)
    close, total, largest = [0] * len(TOLERANCES), 0, 0.0
    for name, a in ours.items():
        b = theirs[name].to(a.dtype)
        for i, (rtol, atol) in enumerate(TOLERANCES):
            close[i] += int(torch.isclose(a, b, rtol=rtol, atol=atol).sum())
        total += a.numel()
        largest = max(largest, float((a - b).abs().max()))
    return [c / total for c in close], largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=list(ENGINES), default="ddp")
    parser.add_argument("--out", type=Path, default=Path("runs/distributed-tolerance"))
    args = parser.parse_args()
    out = args.out.resolve()
    config, names, mutations = ENGINES[args.engine]
    methods = [METHODS[name] for name in names]
    base = out / "base"
    if not (base / "base_model" / "config.json").is_file():
        Runner(load_config(None, tiny_overrides(**BASE_STAGE)), base, world=SINGLE).run()
    stream = stream_overrides(base / "base_model")
    singles = {name: out / "single" / name.replace("+", "-") for name in names}
    for name, method in zip(names, methods):
        if not (singles[name] / "results.json").is_file() or not RunStore(singles[name]).read_results()["complete"]:
            Runner(load_config(None, [*stream, f"method={method}"]), singles[name], world=SINGLE).run()
    for label, mutation in mutations.items():
        directory = out / args.engine / label.replace(" ", "-")
        driver = directory / "driver.py"
        directory.mkdir(parents=True, exist_ok=True)
        driver.write_text(DRIVER.format(mutation=textwrap.dedent(mutation)))
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs" / "accelerate" / config),
            str(driver), str(directory / "runs"), json.dumps(methods), *stream,
        ]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
        for index, name in enumerate(names):
            fractions, largest = compare(singles[name], directory / "runs" / str(index))
            matrix = RunStore(directory / "runs" / str(index)).read_results()["matrix"]
            close = "  ".join(f"{100 * f:7.3f}% at {r:g}/{a:g}" for f, (r, a) in zip(fractions, TOLERANCES))
            print(f"{label:30s} {name:6s} close {close}  largest difference {largest:.2e}  matrix {matrix}", flush=True)
    for name in names:
        print(f"{'one process':30s} {name:6s} matrix {RunStore(singles[name]).read_results()['matrix']}")


if __name__ == "__main__":
    main()
