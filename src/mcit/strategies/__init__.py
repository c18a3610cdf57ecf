"""Continual-learning methods. Importing this package registers every method."""

from mcit.strategies import er, joint, seqft  # noqa: F401  (registration side effects)
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyChain, StrategyOptions, TaskView

__all__ = ["STRATEGIES", "Context", "Strategy", "StrategyChain", "StrategyOptions", "TaskView"]
