"""The task stream (MCIT): each step trains one task; every task is evaluated after each."""

from __future__ import annotations

from typing import Any

from mcit import metrics
from mcit.benchmarks import Stream
from mcit.data.sample import LANGUAGE_KINDS, Sample, SampleLookup, Task
from mcit.errors import UserError
from mcit.scenarios.base import SCENARIOS, Scenario, StepData
from mcit.selection.base import SelectionContext


@SCENARIOS.register("stream", help="Tasks arrive one at a time and are trained in turn (MCIT)")
class StreamScenario(Scenario):
    """Steps are the stream's tasks; columns are the tasks plus the evaluation-only ones.

    The square part of the matrix (trained tasks) gives the stream metrics of
    :func:`mcit.metrics.summarize` (with their conventions, and why any is unavailable, e.g.
    FWT when ``eval.seen_tasks_only`` leaves the upper triangle out) and the vision-language
    Delta; each evaluation-only column (a language skill taught before the stream) gives its
    linguistic forgetting against the zero-shot row, and so does each language kind (NLU,
    NLG) of them together, as Srivastava et al. measure it (see :meth:`summarize`).
    """

    kind = "stream"
    step_label = "task"

    def __init__(self, config, seed: int) -> None:
        super().__init__(config, seed)
        if not isinstance(self.data, Stream):
            raise UserError(f"benchmark {config.benchmark.name!r} builds a data pool; set scenario: pool")
        self._by_id: dict[str, dict[str, Sample]] = {}

    @property
    def steps(self) -> list[str]:
        return [task.name for task in self.data.tasks]

    @property
    def columns(self) -> list[Task]:
        return self.data.tasks + self.data.eval_only

    def evaluated_after(self, index: int) -> list[Task]:
        """Every column, or with ``eval.seen_tasks_only`` the tasks trained so far and the eval-only ones.

        The eval-only tasks stay: their linguistic forgetting is measured after every step.
        """
        if self.config.eval.seen_tasks_only:
            return self.data.tasks[: index + 1] + self.data.eval_only
        return self.columns

    def header(self) -> dict[str, Any]:
        return {
            "tasks": self.steps,
            "eval_only": [task.name for task in self.data.eval_only],
            "test_sizes": {task.name: len(task.eval) for task in self.columns},
        }

    def lookup(self, reached: int) -> SampleLookup:
        position = {name: index for index, name in enumerate(self.steps)}

        def sample(task: str, sample_id: str) -> Sample:
            if position.get(task, len(position)) > reached:
                raise KeyError(f"task {task!r} is not among the tasks reached so far (step {reached + 1})")
            if task not in self._by_id:
                self._by_id[task] = {s.id: s for s in self.data.tasks[position[task]].train}
            return self._by_id[task][sample_id]

        return sample

    def begin(self, index: int, selection: SelectionContext) -> StepData:
        task = self.data.tasks[index]
        return StepData(task.name, task.train)

    def summarize(self, results: dict[str, Any]) -> None:
        names, extra, rows = results["tasks"], results["eval_only"], results["rows"]
        # None: not evaluated after that task (eval.seen_tasks_only)
        results["matrix"] = [[row["scores"].get(n) for n in names + extra] for row in rows]
        done = len(rows)
        square = [[row["scores"].get(n) for n in names[:done]] for row in rows]
        zero_shot = [results["zero_shot"][n] for n in names[:done]]
        sizes = [results["test_sizes"][n] for n in names[:done]]
        summary = metrics.summarize(square, zero_shot, sizes)
        results["metrics"] = summary.values
        results["metric_conventions"] = summary.conventions
        results["metrics_unavailable"] = summary.unavailable
        results["language"] = {
            name: {
                "zero_shot": results["zero_shot"][name],
                "current": rows[-1]["scores"][name],
                "forgetting": metrics.linguistic_forgetting(results["zero_shot"][name], rows[-1]["scores"][name]),
            }
            for name in extra
        }
        results["linguistic_forgetting"] = self._language_groups(results)
        by_step = metrics.vision_language_forgetting_by_step(square)
        results["vision_language_forgetting"] = {"tasks": names[:done], "forgetting": by_step[-1], "by_step": by_step}

    def _language_groups(self, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Linguistic forgetting (Delta) of the eval-only language tasks, as Srivastava et al. report it.

        ``all``: the headline Delta, omega the harmonic mean of every language task's score
        (0 if one is 0); ``nlu`` and ``nlg``: the breakdown by kind, omega the plain mean of
        the kind's scores. The reference is the zero-shot row (the model after the base
        stage); Delta = omega_ref - omega after the last row (``forgetting``) and after every
        row (``by_step``, aligned with ``results["rows"]``); ``omega`` names the convention.
        Tasks without a kind (e.g. a file task) join no group.
        """
        kinds = {task.name: task.language_kind for task in self.data.eval_only}
        language = [name for name in results["eval_only"] if kinds.get(name) in LANGUAGE_KINDS]
        wanted = [("all", language, "harmonic")] if language else []
        wanted += [(kind, [name for name in language if kinds[name] == kind], "plain") for kind in LANGUAGE_KINDS]
        groups = {}
        for key, members, omega in wanted:
            if not members:
                continue
            reference = [results["zero_shot"][name] for name in members]
            by_step = metrics.linguistic_forgetting_by_step(
                reference, [[row["scores"][name] for name in members] for row in results["rows"]], omega
            )
            mean = metrics.OMEGAS[omega]
            groups[key] = {
                "tasks": members,
                "omega": omega,
                "zero_shot": mean(reference),
                "current": mean([results["rows"][-1]["scores"][name] for name in members]),
                "forgetting": by_step[-1],
                "by_step": by_step,
            }
        return groups
