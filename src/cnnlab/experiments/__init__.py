"""Runs side by side: `cnnlab runs` (every run folder in one table) and `cnnlab compare` (settings,
curves, per-class accuracy and McNemar's exact test of two or more runs).

`cnnlab.runs` and `cnnlab.compare` are the functions (cnnlab/api.py). Listing runs never loads
torch; the names below load on use.
"""

from importlib import import_module

_FROM = {"RunsTable": ".table", "list_runs": ".table", "Comparison": ".compare",
         "compare_runs": ".compare", "mcnemar_exact": ".mcnemar"}
__all__ = list(_FROM)


def __getattr__(name: str):
    if name in _FROM:
        return getattr(import_module(_FROM[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
