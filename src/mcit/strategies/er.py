"""Experience replay: keep a small buffer of every finished task and mix it into new tasks."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from mcit.data.sample import Sample, samples_from_state, samples_to_state
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class EROptions(StrategyOptions):
    buffer_per_task: int = Field(200, ge=1, description="Samples kept from each finished task.")


@STRATEGIES.register("er")
class ExperienceReplay(Strategy):
    """Experience replay: a per-task random buffer concatenated to each new task's data.

    After task t, ``buffer_per_task`` of its training samples are drawn uniformly at random
    (seeded by the task seed) and kept, images included, in the strategy state. Training on
    task t+1 uses its own data plus every buffer, shuffled together by the loop.
    """

    options_class = EROptions
    options: EROptions

    def __init__(self, options: EROptions | None = None) -> None:
        super().__init__(options)
        self.buffers: dict[str, list[Sample]] = {}

    def train_data(self, ctx: Context, data: Sequence[Sample]) -> Sequence[Sample]:
        replay = [sample for buffer in self.buffers.values() for sample in buffer]
        return list(data) + replay

    def after_task(self, ctx: Context) -> None:
        rng = random.Random(f"er/{ctx.seed}")
        count = min(self.options.buffer_per_task, len(ctx.task.train))
        self.buffers[ctx.task.name] = rng.sample(list(ctx.task.train), count)

    def state_dict(self) -> dict[str, Any]:
        return {"buffers": {name: samples_to_state(buffer) for name, buffer in self.buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffers = {name: samples_from_state(buf) for name, buf in state.get("buffers", {}).items()}
