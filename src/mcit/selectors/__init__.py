"""Data selectors of the pool scenario. Importing this package registers every selector.

Each selector lives in its own module and registers itself with ``@SELECTORS.register``;
the algorithms they call (clustering, CCS, pruning, features) live in :mod:`mcit.selection`.
"""

import importlib
import pkgutil

from mcit.selectors.base import SELECTORS, HiddenSkills, Selection, SelectionContext, Selector, SelectorOptions

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SELECTORS", "HiddenSkills", "Selection", "SelectionContext", "Selector", "SelectorOptions"]
