"""Adversarial attacks, robust accuracy, and the attack adversarial training trains against.

The attacks (cnnlab.attack.attacks) need nothing but an nn.Module, so training can use them; robust
accuracy over a run's data (and its figures) is in cnnlab.attack.robustness. Names load on first
use (PEP 562), so `import cnnlab` does not load torch or Captum.
"""

from importlib import import_module

__all__ = ["METHODS", "NORMS", "Attack", "FGSMAttack", "PGDAttack", "correct", "make_attack",
           "robust_correct", "seeded", "training_attack"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(".attacks", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
