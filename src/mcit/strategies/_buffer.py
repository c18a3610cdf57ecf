"""Replay buffers shared by the replay-family methods (er, agem): selectors and the buffer.

A *selector* decides which samples of a finished task are kept. Every selector is a pure
function of its arguments: it returns new per-task buffers and never mutates its inputs;
all randomness comes from ``random.Random(seed)`` with the seed string it is given, so the
same call always keeps the same samples (and a resumed run keeps what an uninterrupted one
did). Selectors are registered in :data:`BUFFER_SELECTORS` and named in configs.

Buffers are ``dict[task name -> list[Sample]]`` whose insertion order is the task order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field, field_validator

from mcit.data.sample import Sample, SampleGroups, SampleLookup
from mcit.registry import Registry
from mcit.strategies.base import StrategyOptions

Buffers = dict[str, list[Sample]]
Selector = Callable[..., Buffers]
"""``selector(buffers, task, samples, *, per_task, capacity, seen, seed) -> new buffers``.

Args:
    buffers: Buffers of the tasks finished before ``task`` (not modified).
    task: Name of the task that just finished.
    samples: Its training samples, in stream order.
    per_task: Samples kept per task (per-task selectors).
    capacity: Total samples kept over all tasks (total-capacity selectors).
    seen: Samples of earlier tasks already streamed past the selector (reservoir only).
    seed: Seed string of ``random.Random``.
"""

BUFFER_SELECTORS: Registry[Selector] = Registry("buffer selector")
TOTAL_CAPACITY_SELECTORS = ("reservoir", "per_task_quota")


@BUFFER_SELECTORS.register("random")
def select_random(
    buffers: Buffers, task: str, samples: Sequence[Sample], *, per_task: int, capacity: int, seen: int, seed: str
) -> Buffers:
    """Uniform sample of ``per_task`` samples of the task (all of them if fewer); older buffers kept."""
    rng = random.Random(seed)
    # Exactly the call ER has always made: documented ER results depend on this draw.
    chosen = rng.sample(list(samples), min(per_task, len(samples)))
    return {**{name: list(kept) for name, kept in buffers.items()}, task: chosen}


@BUFFER_SELECTORS.register("reservoir")
def select_reservoir(
    buffers: Buffers, task: str, samples: Sequence[Sample], *, per_task: int, capacity: int, seen: int, seed: str
) -> Buffers:
    """Reservoir sampling (Algorithm R) of one ``capacity``-sized buffer over the whole stream.

    The stream is every task's training samples in task order and, within a task, in the
    order given. The n-th streamed sample (0-based, counting all earlier tasks via ``seen``)
    enters a full buffer with probability ``capacity / (n + 1)``, replacing a uniformly chosen
    kept sample, so after N samples every one of them is kept with probability capacity / N:
    old tasks keep a share proportional to their size, not an equal share. Which slot a sample
    occupies is not stored (only its task); since the replaced sample is uniform over the
    buffer, slot order does not change the distribution, and the canonical order (task order,
    then order kept) makes the draw deterministic.
    """
    rng = random.Random(seed)
    slots = [(name, sample) for name, kept in buffers.items() for sample in kept]
    for offset, sample in enumerate(samples):
        if len(slots) < capacity:
            slots.append((task, sample))
            continue
        position = rng.randrange(seen + offset + 1)
        if position < capacity:
            slots[position] = (task, sample)
    regrouped: Buffers = {name: [] for name in buffers}
    regrouped[task] = []
    for name, sample in slots:
        regrouped[name].append(sample)
    return regrouped


def quota(capacity: int, tasks: int, index: int) -> int:
    """Share of task ``index`` when ``capacity`` is split over ``tasks`` tasks.

    Equal shares; the remainder ``capacity % tasks`` goes one each to the earliest tasks.
    For a fixed task the share never grows as tasks are added, so buffers only shrink.
    """
    return capacity // tasks + (1 if index < capacity % tasks else 0)


@BUFFER_SELECTORS.register("per_task_quota")
def select_per_task_quota(
    buffers: Buffers, task: str, samples: Sequence[Sample], *, per_task: int, capacity: int, seen: int, seed: str
) -> Buffers:
    """A total ``capacity`` split equally over the tasks seen so far (see :func:`quota`).

    The new task keeps a uniform random sample of its share; each older buffer is cut to
    its new share by keeping its first samples (a prefix of a uniformly drawn, randomly
    ordered sample is itself a uniform sample). A task with fewer samples than its share
    keeps them all and the unused room is not given to other tasks.
    """
    names = [name for name in buffers if name != task] + [task]
    rng = random.Random(seed)
    shrunk = {name: list(buffers[name][: quota(capacity, len(names), i)]) for i, name in enumerate(names[:-1])}
    share = quota(capacity, len(names), len(names) - 1)
    shrunk[task] = rng.sample(list(samples), min(share, len(samples)))
    return shrunk


class BufferOptions(StrategyOptions):
    """Options of a method that keeps an episodic memory with a buffer selector."""

    selector: str = Field(
        "random",
        description=f"Buffer selector: {', '.join(BUFFER_SELECTORS.names())}. "
        "'random' keeps buffer_per_task per task; the others fill a total capacity.",
    )
    buffer_per_task: int = Field(200, ge=1, description="Samples kept from each finished task (selector 'random').")
    buffer_fraction: float | None = Field(
        None, gt=0, le=1,
        description="Keep this fraction of each finished task instead (at least 1 sample; selector 'random'; e.g. 0.01 for 1% rehearsal); null uses buffer_per_task.",
    )  # fmt: skip
    capacity: int = Field(
        1000, ge=1, description="Total samples kept over all tasks (selectors 'reservoir' and 'per_task_quota')."
    )

    def per_task(self, task_size: int) -> int:
        """Samples kept from a finished task of ``task_size`` training samples."""
        if self.buffer_fraction is None:
            return self.buffer_per_task
        return max(1, round(self.buffer_fraction * task_size))

    @field_validator("selector")
    @classmethod
    def _known_selector(cls, name: str) -> str:
        if name not in BUFFER_SELECTORS:
            raise ValueError(BUFFER_SELECTORS.unknown_message(name))
        return name


REPLAY_ROLE = "replay"
"""The role (:meth:`Strategy.provides`) of a method that mixes a replay buffer into the training data."""


class ReplayBuffer:
    """Per-task buffers filled by a selector, plus the stream position reservoir needs.

    The buffers are :class:`~mcit.data.sample.SampleGroups`: the checkpointed state holds
    each kept sample's task and id, never its pixels, and a restored buffer is re-read from
    the stream through the run's lookup on first use.

    Args:
        options: Selector name and sizes.
        purpose: Prefix of the seed string (``f"{purpose}/{task seed}"``), so two methods
            with their own memories draw independently.
    """

    def __init__(self, options: BufferOptions, purpose: str) -> None:
        self.options = options
        self.purpose = purpose
        self._kept = SampleGroups()
        self.seen = 0

    def buffers(self, lookup: SampleLookup | None = None) -> Buffers:
        """Kept samples per finished task, in task order (``lookup``: after a restore)."""
        return self._kept.get(lookup)

    def add_task(self, name: str, samples: Sequence[Sample], task_seed: int, lookup: SampleLookup | None = None) -> None:
        """Let the selector update the buffers with a finished task's samples."""
        select = BUFFER_SELECTORS.get(self.options.selector)
        self._kept.set(select(
            self.buffers(lookup),
            name,
            samples,
            per_task=self.options.per_task(len(samples)),
            capacity=self.options.capacity,
            seen=self.seen,
            seed=f"{self.purpose}/{task_seed}",
        ))
        self.seen += len(samples)

    def samples(self, lookup: SampleLookup | None = None) -> list[Sample]:
        """Every kept sample, in task order."""
        return [sample for kept in self.buffers(lookup).values() for sample in kept]

    def state_dict(self) -> dict[str, Any]:
        return {"buffers": self._kept.state_dict(), "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._kept.load_state_dict(state.get("buffers", {}))
        self.seen = int(state.get("seen", 0))
