"""The selector interface: choose a step's training data from the whole pool.

A selector sees the pool through :class:`HiddenSkills` (no skill labels: LAMP's setting has
no sample-wise task labels) and may use the current model to compute features. It returns
positions in the pool, never samples, so the runner stays the one owner of the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from mcit.data.sample import Sample
from mcit.distributed import SINGLE, World
from mcit.registry import Registry


class SelectorOptions(BaseModel):
    """Options of a selector; subclasses add fields (each with a description)."""

    model_config = ConfigDict(extra="forbid")


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda advance: None


@dataclass
class SelectionContext:
    """What a selector may use besides the pool.

    Attributes:
        model: The current model (selection is done with it, in eval mode).
        collator: Encodes samples for the model.
        device: Where the model lives.
        seed: Seed of this selection (derive every random choice from it).
        work_dir: Directory for memory-mapped feature stores; ``None`` keeps features in RAM.
        progress: ``progress(description, total) -> advance(n)`` for progress bars.
        world: The training processes: pool features are computed shard by shard on them
            and gathered, so every process selects from the same features.
    """

    model: torch.nn.Module
    collator: Any
    device: torch.device
    seed: int
    work_dir: Path | None = None
    progress: Callable[[str, int], Callable[[int], None]] = _no_progress
    world: World = SINGLE


@dataclass
class Selection:
    """A selector's answer.

    Attributes:
        indices: Sorted positions in the pool of the chosen samples.
        clusters: Cluster of each chosen sample (aligned with ``indices``), or ``None``.
        scores: Name of the score that chose each sample (aligned), or ``None``.
        summary: JSON-able facts for the results file (cluster sizes, chosen scores, k, ...).
    """

    indices: np.ndarray
    clusters: np.ndarray | None = None
    scores: list[str] | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class Selector:
    """Base class. Subclasses set ``options_class`` and implement :meth:`select`."""

    options_class: ClassVar[type[SelectorOptions]] = SelectorOptions
    # True for selectors that also prune the pool permanently (needs pool.pool_budget).
    prunes: ClassVar[bool] = False

    def __init__(self, options: SelectorOptions | None = None) -> None:
        self.options = options if options is not None else self.options_class()

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        """Choose ``budget`` samples of ``pool`` (``newest``: positions of the dataset that just joined)."""
        raise NotImplementedError

    def prune(self, ctx: SelectionContext, pool: Sequence[Sample], pool_budget: int) -> np.ndarray:
        """Sorted positions of the samples to keep (at most ``pool_budget``); pruning selectors only."""
        raise NotImplementedError(f"{type(self).__name__} does not prune the pool")


SELECTORS: Registry[type[Selector]] = Registry("selector")


class HiddenSkills(Sequence[Sample]):
    """A read-only view of samples with their skill labels blanked (what selectors see)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        sample = self._samples[index]
        return replace(sample, skill="") if sample.skill else sample


def uniform(n: int, budget: int, seed: int) -> np.ndarray:
    """``min(budget, n)`` sorted positions drawn uniformly without replacement."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(budget, n), replace=False)).astype(np.int64)


def build_selector(name: str, options: dict[str, Any]) -> Selector:
    """The registered selector ``name`` with ``options`` validated by its options model.

    Raises:
        UserError: If ``name`` is not registered.
        pydantic.ValidationError: If an option is unknown or has a bad value.
    """
    selector_class: type[Selector] = SELECTORS.get(name)
    return selector_class(selector_class.options_class(**options))
