"""Joint (multitask) training: the upper bound of a stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcit.data.sample import Sample, SampleGroups
from mcit.strategies.base import STRATEGIES, Context, Strategy


@STRATEGIES.register("joint")
class Joint(Strategy):
    """Multitask upper bound: at step t, train on the union of tasks 1..t.

    Training continues from the current model (cumulative joint training), so the last row
    of the matrix is a model trained on the union of all tasks and every earlier row is the
    multitask model of the tasks seen so far. It trains on all past training data, so it is
    an upper bound, not a continual method. Its state holds references (task and sample id)
    to what each finished task trained on, never the samples: a resumed run re-reads them
    from the stream.
    """

    composable = False
    supports_sharding = True

    def __init__(self, options=None) -> None:
        super().__init__(options)
        self.seen = SampleGroups()

    def train_data(self, ctx: Context, data: Sequence[Sample]) -> Sequence[Sample]:
        return list(data) + [sample for past in self.seen.get(ctx.lookup).values() for sample in past]

    def after_task(self, ctx: Context) -> None:
        self.seen.set({**self.seen.get(ctx.lookup), ctx.task.name: list(ctx.task.train)})

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen.load_state_dict(state.get("seen", {}))
