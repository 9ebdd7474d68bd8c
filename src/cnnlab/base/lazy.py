"""Names a package exports from its submodules, loaded on first use (PEP 562), so that
`import cnnlab` does not load torch, timm, Captum or FastAPI: they load with the first function
that needs them."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_names(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports each name from its submodule
    (`where`: name -> relative module, e.g. {"evaluate_run": ".run"}) when it is first asked for."""

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(import_module(where[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
