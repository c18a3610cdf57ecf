"""The data pool of the lifelong (LiIT) scenario and the metrics of its skill matrix.

The pool is an ordered list of sample ids over the datasets seen so far. Only the ids go
into checkpoints: the samples themselves are rebuilt from the (deterministic) benchmark on
resume, so a checkpoint stays small however large the pool grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mcit import metrics
from mcit.data.sample import Sample, Task


class Pool:
    """Samples available for selection: every dataset that has joined, minus pruned samples.

    Args:
        datasets: All datasets of the stream, in arrival order (used to look samples up).
    """

    def __init__(self, datasets: Sequence[Task]) -> None:
        self._by_id: dict[str, Sample] = {s.id: s for task in datasets for s in task.train}
        self._datasets = list(datasets)
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def samples(self) -> list[Sample]:
        return [self._by_id[i] for i in self.ids]

    def add(self, index: int) -> np.ndarray:
        """Let dataset ``index`` join; returns the pool positions of its samples."""
        start = len(self.ids)
        self.ids.extend(s.id for s in self._datasets[index].train)
        return np.arange(start, len(self.ids), dtype=np.int64)

    def keep(self, positions: np.ndarray) -> None:
        """Prune permanently: keep only the samples at ``positions`` (in pool order)."""
        self.ids = [self.ids[p] for p in np.sort(np.unique(positions))]

    def state_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = [i for i in state["ids"] if i not in self._by_id]
        if unknown:
            raise ValueError(f"checkpointed pool has {len(unknown)} ids the benchmark does not produce, e.g. {unknown[0]!r}")
        self.ids = list(state["ids"])


def pool_metrics(skills: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of a pool run from its per-step skill scores (LAMP's, plus average accuracy).

    ``forgetting_rate`` follows METHODS.md over the trained steps (t = 2..T: a drop from the
    zero-shot row is not forgetting). Relative gain needs the sequential run's best score per
    skill, so it is computed across runs (``benchmarks/lifelong_selection.py``), not here.
    """
    history = [{s: row["scores"][s] for s in skills} for row in rows]
    return {
        "final_average_accuracy": float(np.mean([history[-1][s] for s in skills])),
        "average_accuracy_per_step": [float(np.mean([h[s] for s in skills])) for h in history],
        "forgetting_rate": metrics.forgetting_rate(history),
        "forgetting_rate_per_skill": {s: metrics.forgetting_rate([{s: h[s]} for h in history]) for s in skills},
    }
