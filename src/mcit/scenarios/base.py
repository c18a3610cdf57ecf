"""The scenario interface: what a run iterates, step by step.

A scenario owns the data of a run (built from its benchmark) and answers, for every step:
what to train on (:meth:`Scenario.begin`), what to evaluate (:attr:`Scenario.columns`), and
what to commit besides the model and the strategy (:meth:`Scenario.end`, and its own
:meth:`Scenario.state_dict`). The runner loops over :attr:`Scenario.steps` and never asks
which scenario it runs, so a new scenario is one registered class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mcit.benchmarks import build_stream
from mcit.data.sample import Sample, SampleLookup, Task
from mcit.registry import Registry
from mcit.selection.base import SelectionContext


@dataclass
class StepData:
    """What one step trains on.

    Attributes:
        name: The step's name (a row of the matrix).
        train: The samples the strategies receive as the step's training data.
        facts: JSON-able facts for the step's results row known before training.
    """

    name: str
    train: Sequence[Sample]
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEnd:
    """What a step adds to the commit after training and evaluation.

    Attributes:
        facts: JSON-able facts for the step's results row.
        files: Run-directory-relative path -> JSON-able object, written atomically before
            the step's checkpoint.
    """

    facts: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Any] = field(default_factory=dict)


class Scenario:
    """Base class: subclasses register in :data:`SCENARIOS` and implement the hooks.

    Args:
        config: The run's :class:`mcit.config.RunConfig` (not imported here: the config
            imports the scenario registry to validate ``scenario``).
        seed: The run's seed (the benchmark's data is drawn from it).

    Attributes:
        data: The benchmark's data (a :class:`~mcit.benchmarks.Stream` or
            :class:`~mcit.benchmarks.PoolStream`, as :attr:`runs_on` says).
    """

    kind: ClassVar[str] = ""  # the registered name, written into results.json
    runs_on: ClassVar[str] = "stream"  # the benchmarks it runs: those that build a "stream" or a "pool"
    step_label: ClassVar[str] = "step"  # what a step is called in progress messages ("task 2/5 count")

    def __init__(self, config, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.data = build_stream(config.benchmark, seed)

    @property
    def steps(self) -> list[str]:
        """Names of the steps, in order (the rows of the matrix)."""
        raise NotImplementedError

    @property
    def columns(self) -> list[Task]:
        """What is evaluated after every step (and for the zero-shot row)."""
        raise NotImplementedError

    def evaluated_after(self, index: int) -> list[Task]:
        """What is evaluated after step ``index``: :attr:`columns` unless the scenario skips some
        (their cells are ``None`` in the row's scores)."""
        return self.columns

    @property
    def base_train(self) -> list[Sample] | None:
        """Training data of the joint base stage, or ``None``."""
        return self.data.base_train

    @property
    def corpus(self) -> list[str]:
        """Text to train a tiny model's tokenizer on."""
        return self.data.corpus

    def check(self) -> None:
        """Checks that need the data but no model (raise UserError); run before anything is written."""

    def header(self) -> dict[str, Any]:
        """What results.json says about the rows and columns."""
        raise NotImplementedError

    def lookup(self, reached: int) -> SampleLookup:
        """The sample lookup strategies get at step ``reached`` (refuses later steps)."""
        raise NotImplementedError

    def begin(self, index: int, selection: SelectionContext) -> StepData:
        """What step ``index`` trains on (``selection``: the current model, for selectors)."""
        raise NotImplementedError

    def end(self, index: int, selection: SelectionContext) -> StepEnd:
        """After step ``index`` trained and was evaluated: facts and files to commit."""
        return StepEnd()

    def summarize(self, results: dict[str, Any]) -> None:
        """Fill ``matrix``, ``metrics`` (and what else the scenario reports) from ``results["rows"]``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs besides the model and the strategy (e.g. the pool's ids)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


SCENARIOS: Registry[type[Scenario]] = Registry("scenario")
