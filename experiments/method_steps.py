"""Every registered method's training-step time relative to seqft, on one model setting (``gpu_check.py``).

Each method trains a freshly built model the way a run of it would: ``load_config`` with the
method and the setting's LoRA, then ``configure_trainable``, ``build_strategy`` and
``setup_model``. What the registry declares decides the model, never the method's name: a
method that brings its own adapters (``peft_lora = "refused"``) runs without the peft adapter
and with its own; one that requires the adapter gets the setting's; one that ``requires`` a
role (dgg: a replay method) is chained after the first registered method that ``provides``
it, as a run must (the row names the chain). Task 1 (``first``) is trained with the method's
hooks so that its buffers, anchors and importances exist (its ``after_task`` timed apart);
task 2 (``second``) is then trained for ``warmup + steps`` steps and the mean of the timed
steps is the method's step time (hooks included: data mixing, loss, ``after_backward``).
seqft runs first and again last; the second run shows how far the machine drifted.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mcit.config import load_config
from mcit.costs import MemoryPeaks
from mcit.data.sample import Sample
from mcit.models.hf import configure_trainable
from mcit.run_setup import build_strategy
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.training.loop import train
from mcit.training.settings import TrainConfig

REFERENCE = "seqft"


def _provides(name: str) -> frozenset[str]:
    strategy_class = STRATEGIES.get(name)
    return strategy_class.provides(strategy_class.options_class())


def chain_for(name: str) -> list[str]:
    """``name``, after a registered provider of each role it requires (e.g. ``[er, dgg]``)."""
    strategy_class = STRATEGIES.get(name)
    chain, provided = [name], set(_provides(name))
    for role in strategy_class.requires(strategy_class.options_class()):
        if role not in provided:
            provider = next(other for other in STRATEGIES.names() if role in _provides(other))
            chain.insert(0, provider)
            provided |= _provides(provider)
    return chain


def adapters_of(chain: Sequence[str], config) -> str:
    """Which adapters the chain's run trains (decided by the methods' ``peft_lora`` declarations)."""
    if any(STRATEGIES.get(name).peft_lora == "refused" for name in chain):
        return "its own"
    return "none" if config.model.lora is None else f"peft LoRA r {config.model.lora.r}"


def method_overrides(chain: Sequence[str], lora: dict[str, float] | None, trainable: Sequence[str]) -> list[str]:
    """The ``key=value`` overrides that give a run of ``chain`` in this model setting."""
    refused = any(STRATEGIES.get(name).peft_lora == "refused" for name in chain)
    adapter = "null" if refused or lora is None else f"{{r: {lora['r']:g}, alpha: {lora['alpha']:g}}}"
    return [f"method=[{', '.join(chain)}]", f"model.trainable=[{', '.join(trainable)}]", f"model.lora={adapter}"]


def time_method(
    name: str, build: Callable[[], torch.nn.Module], collator, first: Sequence[Sample], second: Sequence[Sample],
    settings: TrainConfig, steps: int, warmup: int, device: torch.device, lora: dict[str, float] | None,
    trainable: Sequence[str], seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """One method's step time on a fresh model (see the module docstring)."""
    chain = chain_for(name)
    config = load_config(None, method_overrides(chain, lora, trainable))
    model = configure_trainable(build(), config.model.trainable, config.model.lora, seed).to(device)
    strategy = build_strategy(config)
    model = strategy.setup_model(model, config.seed)
    peaks = MemoryPeaks(device)
    ctx = Context(model, TaskView(0, "first", first), seed, device, collator)
    strategy.before_task(ctx)
    first_settings = settings.model_copy(update={"epochs": 1.0})
    train(ctx, strategy.train_data(ctx, first), strategy, first_settings)
    started = _now(device)
    strategy.after_task(ctx)
    after_task = _now(device) - started
    ctx = Context(model, TaskView(1, "second", second), seed + 1, device, collator)
    strategy.before_task(ctx)
    data = list(strategy.train_data(ctx, second))
    timed_settings = settings.model_copy(update={"epochs": (steps + warmup) * settings.batch_size / len(data)})
    marks = [_now(device)]
    train(ctx, data, strategy, timed_settings, on_step=lambda step, total, loss: marks.append(_now(device)))
    trained = sum(p.numel() for _, p in ctx.trainable())
    return {
        "chain": chain,
        "adapters": adapters_of(chain, config),
        "trained_parameters": trained,
        "step_seconds": (marks[-1] - marks[warmup]) / (len(marks) - 1 - warmup),
        "timed_steps": len(marks) - 1 - warmup,
        "after_task_seconds": after_task,
        **peaks.read(),
    }


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_methods(names: Sequence[str], log: Callable[[str], None] = print, **kwargs: Any) -> dict[str, Any]:
    """:func:`time_method` for each of ``names`` (seqft first and again last), freeing each model before the next.

    Returns:
        ``{"methods": {name: row with "ratio" to seqft}, "seqft_drift": last seqft / first}``.
    """
    order = [REFERENCE, *[n for n in names if n != REFERENCE], REFERENCE]
    rows: dict[str, dict[str, Any]] = {}
    again = None
    for index, name in enumerate(order):
        row = time_method(name, **kwargs)
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if index == len(order) - 1:
            again = row
        else:
            rows[name] = row
        log(
            f"{'+'.join(row['chain']):12s} {1000 * row['step_seconds']:9.1f} ms/step   after_task {row['after_task_seconds']:6.2f} s"
        )
    reference = rows[REFERENCE]["step_seconds"]
    for row in rows.values():
        row["ratio"] = row["step_seconds"] / reference
    return {"methods": rows, "seqft_drift": again["step_seconds"] / reference}
