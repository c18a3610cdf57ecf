"""Experience replay: keep a small buffer of every finished task and mix it into new tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcit.data.sample import Sample
from mcit.strategies._buffer import REPLAY_ROLE, BufferOptions, Buffers, ReplayBuffer
from mcit.strategies.base import STRATEGIES, Context, Strategy


class EROptions(BufferOptions):
    """Buffer selector and sizes (see :class:`mcit.strategies._buffer.BufferOptions`)."""


@STRATEGIES.register("er")
class ExperienceReplay(Strategy):
    """Experience replay: buffers of finished tasks concatenated to each new task's data.

    After task t a buffer selector (option ``selector``) chooses which of its training
    samples to keep; the strategy state holds their references (task and id), not pixels. The default, ``random``, keeps
    ``buffer_per_task`` samples (or ``buffer_fraction`` of the task) drawn uniformly (seeded by the task seed); ``reservoir`` and
    ``per_task_quota`` keep a total ``capacity`` over all tasks. Training on task t+1 uses
    its own data plus every buffer, shuffled together by the loop (concatenation, not a
    fixed replay fraction per batch).
    """

    options_class = EROptions
    options: EROptions
    supports_sharding = True

    def __init__(self, options: EROptions | None = None) -> None:
        super().__init__(options)
        self.memory = ReplayBuffer(self.options, purpose="er")

    @classmethod
    def provides(cls, options: EROptions) -> frozenset[str]:
        return frozenset({REPLAY_ROLE})

    @property
    def buffers(self) -> Buffers:
        """Kept samples per finished task, in task order (in-process; see :class:`ReplayBuffer`)."""
        return self.memory.buffers()

    def train_data(self, ctx: Context, data: Sequence[Sample]) -> Sequence[Sample]:
        return list(data) + self.memory.samples(ctx.lookup)

    def after_task(self, ctx: Context) -> None:
        self.memory.add_task(ctx.task.name, ctx.task.train, ctx.seed, ctx.lookup)

    def state_dict(self) -> dict[str, Any]:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state)
