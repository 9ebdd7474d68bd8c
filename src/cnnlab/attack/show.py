"""`cnnlab attack` on the terminal: robust accuracy against epsilon."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console, print_table

if TYPE_CHECKING:
    from .robustness import AttackResult
    from .settings import AttackSettings


def show_attack(result: AttackResult, settings: AttackSettings) -> int:
    if settings.quiet:
        return 0
    m = result.metrics
    attack = f"PGD, {m.norm}, {m.steps} steps" if m.method == "pgd" else f"FGSM, {m.norm}"
    print_table(f"{attack}: {m.data} {m.split} split, first {m.images:,} images, "
                f"clean accuracy {m.clean_accuracy:.2%}",
                ["eps", "robust accuracy", "fooled"],
                [[f"{r.eps:g}", f"{r.robust_accuracy:.2%}",
                  f"{m.fooled(r):.1%}" if m.fooled(r) is not None else "-"] for r in m.results])
    console.print("eps in pixel units of the image in [0, 1]; fooled: share of the correctly "
                  "classified images that the attack turns wrong")
    console.print(f"written to {result.folder}/: metrics.json, robust_accuracy.png, examples.png")
    return 0
