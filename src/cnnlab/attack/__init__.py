"""Adversarial attacks, robust accuracy, and the attack adversarial training trains against.

Only the attacks are imported here: they need nothing but an nn.Module, so training can use them.
Robust accuracy over a run's data (and its figures) is in cnnlab.attack.robustness.
"""

from .attacks import (
    METHODS,
    NORMS,
    Attack,
    FGSMAttack,
    PGDAttack,
    correct,
    make_attack,
    robust_correct,
    seeded,
    training_attack,
)

__all__ = ["METHODS", "NORMS", "Attack", "FGSMAttack", "PGDAttack", "correct", "make_attack",
           "robust_correct", "seeded", "training_attack"]
