"""Scenarios: what a run iterates. Importing this package registers every scenario."""

from __future__ import annotations

from mcit.scenarios import pool, stream  # noqa: F401  (registration side effect)
from mcit.scenarios.base import SCENARIOS, Scenario, StepData, StepEnd


def build_scenario(config) -> Scenario:
    """The scenario a :class:`mcit.config.RunConfig` names, with its benchmark's data built (no model, nothing written)."""
    return SCENARIOS.get(config.scenario)(config, config.seed)


__all__ = ["SCENARIOS", "Scenario", "StepData", "StepEnd", "build_scenario"]
