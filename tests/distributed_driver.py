"""What the distributed tests launch with ``accelerate launch``: runs of several methods in one launch.

Usage: ``accelerate launch --config_file configs/accelerate/ddp-cpu.yaml tests/distributed_driver.py
OUT LOGS RUNS_JSON [key=value ...]``. Each entry of ``RUNS_JSON`` runs, in order, into ``OUT/<i>``
(the i-th of the list): an object ``{"method": ..., "overrides": [key=value, ...], "out": "<path
under OUT>", "kill": "<rank>:<task index>:<step>"}``, all but the method optional: overrides of its
own (after the common ones), its own directory, and a death: that rank SIGKILLs itself after that
optimizer step, having written ``LOGS/killed``. A kill ends the launch, so it is the last entry.
An entry whose directory holds a stopped run resumes it. Every process records, through a Python
audit hook, each file it opens for writing, creates, renames or deletes under ``OUT`` into
``LOGS/rank<r>.log`` (outside ``OUT``), and writes its pid to ``LOGS/rank<r>.pid``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

out, logs, runs, overrides = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]
rank = int(os.environ.get("RANK", "0"))
logs.mkdir(parents=True, exist_ok=True)
(logs / f"rank{rank}.pid").write_text(str(os.getpid()))
log_fd = os.open(logs / f"rank{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WRITE_EVENTS = {"os.rename", "os.replace", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"}


def audit(event: str, args: tuple) -> None:
    paths = []
    if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
        mode, flags = args[1], args[2] if len(args) > 2 else 0
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & WRITE_FLAGS):
            paths = [args[0]]
    elif event in WRITE_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, os.PathLike))]
    for path in paths:
        resolved = os.path.abspath(os.fspath(path))
        if resolved.startswith(str(out)):
            os.write(log_fd, f"{event} {resolved}\n".encode())


sys.addaudithook(audit)

import mcit.runner
from mcit.config import load_config
from mcit.distributed import world_from_environment
from mcit.runner import Runner

original_train = mcit.runner.train
kill_at: tuple[int, int, int] | None = None  # (rank, task index, step) of the entry running now


def train(ctx, data, strategy, settings, on_step=None, on_checkpoint=None, resume=None):
    def step_then_maybe_die(step, steps, loss):
        if on_step is not None:
            on_step(step, steps, loss)
        if kill_at == (rank, ctx.task.index, step):
            (logs / "killed").write_text(f"rank {rank} after step {step} of task {ctx.task.index}")
            os.kill(os.getpid(), signal.SIGKILL)

    return original_train(ctx, data, strategy, settings, step_then_maybe_die, on_checkpoint, resume)


mcit.runner.train = train
world = world_from_environment()
for index, entry in enumerate(runs):
    kill_at = tuple(int(x) for x in entry["kill"].split(":")) if "kill" in entry else None
    config = load_config(None, [*overrides, *entry.get("overrides", []), f"method={entry['method']}"])
    Runner(config, out / entry.get("out", str(index)), world=world).run()
