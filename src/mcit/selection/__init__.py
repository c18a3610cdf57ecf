"""Data selection: the registered selectors, one module each, and the math they share.

Importing this package registers every selector. Public modules are selectors (plus
``base``, the interface, and ``pool_file``, selection alone on a LLaVA file for
``mcit select``); the ``_``-prefixed modules hold what they share: per-sample features
(``_features``, ``_pool_features``, ``_projection``, ``_featurestore``), clustering
(``_clustering``), coverage-centric sampling (``_ccs``), budget splits (``_budget``), the
multi-way score choice (``_multiway``), redundancy and pruning (``_prune``, ``_baselines``).
"""

import importlib
import pkgutil

from mcit.selection.base import (
    SELECTORS,
    HiddenSkills,
    Selection,
    SelectionContext,
    Selector,
    SelectorOptions,
    build_selector,
)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in ("base", "pool_file"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SELECTORS", "HiddenSkills", "Selection", "SelectionContext", "Selector", "SelectorOptions", "build_selector"]
