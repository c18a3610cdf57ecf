"""The lifelong data pool (LiIT, LAMP's setting): datasets join a pool; a selector picks each step's data.

At step t dataset t joins the pool, the configured selector picks ``pool.budget`` samples
of the *whole* pool with the current model, the strategies train on them, every skill is
evaluated, and a pruning selector may shrink the pool permanently to ``pool.pool_budget``.
Only the pool's sample ids go into checkpoints: the samples are rebuilt from the
(deterministic) benchmark on resume, so a checkpoint stays small however large the pool.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mcit import metrics
from mcit.benchmarks import PoolStream
from mcit.data.sample import Sample, SampleLookup, Task
from mcit.errors import UserError
from mcit.scenarios.base import SCENARIOS, Scenario, StepData, StepEnd
from mcit.seeds import derive_seed
from mcit.selection import HiddenSkills, Selection, SelectionContext, build_selector


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
    skill (:func:`mcit.metrics.upper_bounds`), so it is computed across runs, not here: by
    ``mcit report`` (:mod:`mcit.report.pool_gain`) and the lifelong experiment.
    """
    history = [{s: row["scores"][s] for s in skills} for row in rows]
    return {
        "final_average_accuracy": float(np.mean([history[-1][s] for s in skills])),
        "average_accuracy_per_step": [float(np.mean([h[s] for s in skills])) for h in history],
        "forgetting_rate": metrics.forgetting_rate(history),
        "forgetting_rate_per_skill": {s: metrics.forgetting_rate([{s: h[s]} for h in history]) for s in skills},
    }


@SCENARIOS.register("pool", help="Datasets join a pool; each step trains on a budgeted selection of the whole pool (LiIT)")
class PoolScenario(Scenario):
    """Steps are the datasets in arrival order; columns are the skills (hidden from selectors)."""

    kind = "pool"
    runs_on = "pool"
    step_label = "step"

    def __init__(self, config, seed: int) -> None:
        super().__init__(config, seed)
        if not isinstance(self.data, PoolStream):
            raise UserError(f"benchmark {config.benchmark.name!r} builds a task stream; set scenario: stream")
        self.options = config.pool
        self.selector = build_selector(self.options.selector.name, self.options.selector.options())
        self.pool = Pool(self.data.datasets)
        self._dataset_of = {s.id: index for index, task in enumerate(self.data.datasets) for s in task.train}
        self._by_id = {s.id: s for task in self.data.datasets for s in task.train}
        self._step: tuple[int, Selection, list[Sample], float] | None = None

    @property
    def steps(self) -> list[str]:
        return [dataset.name for dataset in self.data.datasets]

    @property
    def columns(self) -> list[Task]:
        return self.data.skills

    def check(self) -> None:
        first = self.data.datasets[0]
        if self.options.budget > len(first.train):
            raise UserError(
                f"pool.budget={self.options.budget} is larger than the pool at step 1 "
                f"({len(first.train)} samples of {first.name!r}); lower pool.budget or raise benchmark.train_per_task"
            )

    def header(self) -> dict[str, Any]:
        return {
            "datasets": self.steps,
            "skills": [skill.name for skill in self.columns],
            "test_sizes": {skill.name: len(skill.eval) for skill in self.columns},
        }

    def lookup(self, reached: int) -> SampleLookup:
        position = {name: index for index, name in enumerate(self.steps)}

        def sample(step: str, sample_id: str) -> Sample:
            if step not in position:
                raise KeyError(f"{step!r} is not a step of this pool")
            # A sample trained at a step came from a dataset that had joined by then.
            limit = min(position[step], reached)
            if self._dataset_of.get(sample_id, len(position)) > limit:
                raise KeyError(f"sample {sample_id!r} is not in the pool of step {step!r}")
            return self._by_id[sample_id]

        return sample

    def begin(self, index: int, selection: SelectionContext) -> StepData:
        newest = self.pool.add(index)
        view = HiddenSkills(self.pool.samples)
        selection.seed = derive_seed(self.seed, index, "select")
        start = time.perf_counter()
        chosen_positions = self.selector.select(selection, view, newest, self.options.budget)
        seconds = time.perf_counter() - start
        chosen = [view[int(i)] for i in chosen_positions.indices]
        self._step = (index, chosen_positions, chosen, seconds)
        facts = {
            "selected": len(chosen),
            "selected_from_newest": int(np.isin(chosen_positions.indices, newest).sum()),
            "pool_size": len(self.pool),
            "selection_seconds": seconds,
            "selection": chosen_positions.summary,
        }
        return StepData(self.steps[index], chosen, facts)

    def end(self, index: int, selection: SelectionContext) -> StepEnd:
        assert self._step is not None and self._step[0] == index, "end() without begin() of the same step"
        _, chosen_positions, chosen, _ = self._step
        self._step = None
        prune_seconds = 0.0
        if self.selector.prunes:
            start = time.perf_counter()
            selection.seed = derive_seed(self.seed, index, "prune")
            self.pool.keep(self.selector.prune(selection, HiddenSkills(self.pool.samples), self.options.pool_budget))
            prune_seconds = time.perf_counter() - start
        if selection.work_dir is not None:
            shutil.rmtree(selection.work_dir, ignore_errors=True)  # scratch feature files
        record = {
            "step": self.steps[index],
            "ids": [sample.id for sample in chosen],
            "clusters": None if chosen_positions.clusters is None else [int(c) for c in chosen_positions.clusters],
            "scores": chosen_positions.scores,
            "summary": chosen_positions.summary,
        }
        return StepEnd(
            {"pool_size_after_pruning": len(self.pool), "prune_seconds": prune_seconds},
            {f"selections/step-{index + 1:03d}.json": record},
        )

    def summarize(self, results: dict[str, Any]) -> None:
        skills, rows = results["skills"], results["rows"]
        results["matrix"] = [[row["scores"][s] for s in skills] for row in rows]
        results["metrics"] = pool_metrics(skills, rows)

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state["pool"])
