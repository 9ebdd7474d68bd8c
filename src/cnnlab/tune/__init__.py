"""`cnnlab tune`: Optuna studies over train's settings, each trial a run folder.

Names load on first use (PEP 562): Optuna and torch load with the first sweep, not on import.
"""

from ..base.lazy import lazy_names

_WHERE = {"tune": ".sweep", "TuneResult": ".run", "run_sweep": ".run", "SearchSpace": ".space",
          "parse_search": ".space", "load_tune_config": ".space"}
__all__ = list(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
