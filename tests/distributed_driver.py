"""What the distributed tests launch with ``accelerate launch``: runs of several methods in one launch.

Usage: ``accelerate launch --config_file configs/accelerate/ddp-cpu.yaml tests/distributed_driver.py
OUT LOGS METHODS_JSON [key=value ...]``. Each method of ``METHODS_JSON`` (a list of method
strings) runs into ``OUT/<i>``; an entry may be ``[method, [key=value, ...]]``, overrides of its own. Every process records, through a Python audit hook, each
file it opens for writing, creates, renames or deletes under ``OUT`` into ``LOGS/rank<r>.log``
(outside ``OUT``), and writes its pid to ``LOGS/rank<r>.pid``. With ``MCIT_TEST_KILL`` =
``"<rank>:<task index>:<step>"`` that rank SIGKILLs itself after that optimizer step.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

out, logs, methods, overrides = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4:]
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

from mcit.config import load_config
from mcit.distributed import world_from_environment
from mcit.runner import Runner

kill = os.environ.get("MCIT_TEST_KILL")
if kill:
    import mcit.runner

    kill_rank, kill_task, kill_step = (int(x) for x in kill.split(":"))
    original_train = mcit.runner.train

    def train(ctx, data, strategy, settings, on_step=None, on_checkpoint=None, resume=None):
        def step_then_maybe_die(step, steps, loss):
            if on_step is not None:
                on_step(step, steps, loss)
            if rank == kill_rank and ctx.task.index == kill_task and step == kill_step:
                os.kill(os.getpid(), signal.SIGKILL)

        return original_train(ctx, data, strategy, settings, step_then_maybe_die, on_checkpoint, resume)

    mcit.runner.train = train

world = world_from_environment()
for index, entry in enumerate(methods):
    method, extra = (entry, []) if isinstance(entry, str) else entry  # a method string, or [method, its own overrides]
    Runner(load_config(None, [*overrides, *extra, f"method={method}"]), out / str(index), world=world).run()
