"""Continual-learning methods. Importing this package registers every method.

Each method lives in its own module and registers itself with ``@STRATEGIES.register``;
every module of this package is imported here, so adding a method is adding one file.
"""

import importlib
import pkgutil

from mcit.strategies.base import STRATEGIES, Context, Stage, Strategy, StrategyChain, StrategyOptions, TaskView

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STRATEGIES", "Context", "Stage", "Strategy", "StrategyChain", "StrategyOptions", "TaskView"]
