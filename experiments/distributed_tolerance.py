"""Can the 2-process test's tolerance tell a right distributed step from a wrong one?

Usage: .venv/bin/python experiments/distributed_tolerance.py [--out runs/distributed-tolerance]

Runs the stream of ``tests/integration/test_distributed.py`` (its base model, tasks and
settings) for seqft, si and agem in this process, then four times with two processes through
``accelerate launch --config_file configs/accelerate/ddp-cpu.yaml``: as built; with each
process's mean loss weighted equally instead of by its share of the answer tokens (what a
plain average over processes does); with SI's record of the penalty gradient left unsummed
over the processes; and with A-GEM's reference batch computed whole on every process instead
of split. Prints, for each, the share of weights and strategy tensors within 1e-4 relative /
1e-6 absolute and within 1e-2 / 1e-4 (the test's two tolerances), the largest difference, and
the accuracy matrices. The test asks for at least 99% close.
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

MUTATIONS = {
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
    parser.add_argument("--out", type=Path, default=Path("runs/distributed-tolerance"))
    args = parser.parse_args()
    out = args.out.resolve()
    names = ["seqft", "si", "agem"]
    methods = [METHODS[name] for name in names]
    base = out / "base"
    if not (base / "base_model" / "config.json").is_file():
        Runner(load_config(None, tiny_overrides(**BASE_STAGE)), base, world=SINGLE).run()
    stream = stream_overrides(base / "base_model")
    for index, method in enumerate(methods):
        Runner(load_config(None, [*stream, f"method={method}"]), out / "single" / str(index), world=SINGLE).run()
    for label, mutation in MUTATIONS.items():
        directory = out / label.replace(" ", "-")
        driver = directory / "driver.py"
        directory.mkdir(parents=True, exist_ok=True)
        driver.write_text(DRIVER.format(mutation=textwrap.dedent(mutation)))
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "configs/accelerate/ddp-cpu.yaml"),
            str(driver), str(directory / "runs"), json.dumps(methods), *stream,
        ]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
        for index, name in enumerate(names):
            fractions, largest = compare(out / "single" / str(index), directory / "runs" / str(index))
            matrix = RunStore(directory / "runs" / str(index)).read_results()["matrix"]
            close = "  ".join(f"{100 * f:7.3f}% at {r:g}/{a:g}" for f, (r, a) in zip(fractions, TOLERANCES))
            print(f"{label:30s} {name:6s} close {close}  largest difference {largest:.2e}  matrix {matrix}", flush=True)
    for index, name in enumerate(names):
        print(f"{'one process':30s} {name:6s} matrix {RunStore(out / 'single' / str(index)).read_results()['matrix']}")


if __name__ == "__main__":
    main()
