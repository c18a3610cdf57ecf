"""The model's size at each step of a run, as its results row records it.

Methods that add a module per task (olora's adapters, eproj's projectors) grow the model
over the stream; the report's "parameters added over the stream" is the last row's size
minus the first row's size at its start (``mcit.report.tables``), both written when those steps
ran, so a resumed run (whose restart re-adds the finished tasks' modules) reports what an
uninterrupted one does. A run with sharded parameters (FSDP2) creates every task's module
up front, frozen (``Strategy.before_sharding``); such a module counts from the first step
that trains it, so a sharded run records the sizes a one-process run does (eproj's
``reuse_threshold`` may leave some never trained: they never count).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mcit.sharding import parameters_by_name


class ModelSize:
    """Counts the parameters of the modules a run has used so far."""

    def __init__(self) -> None:
        self._unused: set[str] = set()  # parameters added up front that no step has trained yet

    def reserve(self, model: torch.nn.Module, add: Callable[[], None]) -> None:
        """Call ``add()``, which adds modules for later steps; they count once a step trains them."""
        before = {name for name, _ in parameters_by_name(model)}
        add()
        self._unused |= {name for name, _ in parameters_by_name(model)} - before

    def step_started(self, model: torch.nn.Module) -> None:
        """Called when a step's modules are in place (after ``before_task``): what trains now is in use."""
        self._unused -= {name for name, parameter in parameters_by_name(model) if parameter.requires_grad}

    def count(self, model: torch.nn.Module) -> int:
        """Parameters of the model, less the modules added up front that no step has trained."""
        return sum(parameter.numel() for name, parameter in parameters_by_name(model) if name not in self._unused)

