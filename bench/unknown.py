"""Unknown images: how well each score tells a run's classes from images of others, and what the
detector costs a prediction.

    .venv/bin/python bench/unknown.py [--cases flowers-open-set,fashion-vs-digits,cost] [--out DIR]

- flowers-open-set (near): a run on 8 of flowers12's species (the frozen EfficientNet-Lite0 probe,
  or with --fine-tune the fine-tuning recipe); the other 4 species' 80 test photos are the unknowns.
- fashion-vs-digits (far): the default network on Fashion-MNIST (--fashion-epochs, 15 by default as
  `cnnlab train` has it) against scikit-learn's digits resized to 28x28.
- cost: predict's time per image on flowers12's test photos with the detector against without it,
  in one process, alternating, the median of --repeats.

Every score is measured by `cnnlab evaluate RUN --unknown DATA` (AUROC, FPR at 95% TPR, scikit-learn's
roc_curve); the run's own detector (the default score, threshold at 95% of the validation images)
says how many unknown images it refuses and how many known it keeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from isolated import in_own_process

FLOWERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"
KNOWN = ("bluebell", "buttercup", "colts-foot", "daisy", "dandelion", "fritillary", "iris",
         "lily-valley")
UNKNOWN = ("pansy", "sunflower", "tigerlily", "windflower")


def _link_species(target: Path, species: tuple[str, ...], splits: tuple[str, ...]) -> Path:
    for split in splits:
        for name in species:
            (target / split).mkdir(parents=True, exist_ok=True)
            (target / split / name).symlink_to(FLOWERS / split / name)
    return target


def _measure(run: Path, unknown: str, out: Path) -> dict:
    import cnnlab

    cnnlab.evaluate(run, max_shift=0, unknown=unknown, out=str(out), quiet=True, top_losses=0)
    return json.loads((out / "unknown.json").read_text())


def flowers_open_set(folder: str, fine_tune: bool) -> dict:
    import cnnlab

    root = Path(folder)
    known = _link_species(root / "known", KNOWN, ("train", "test"))
    unknown = _link_species(root / "unknown", UNKNOWN, ("test",))
    method = {} if fine_tune else {"freeze": "backbone"}
    run = cnnlab.train(data=str(known), model="timm:efficientnet_lite0", pretrained=True,
                       log="none", out=str(root / "run"), quiet=True, **method)
    return {"test accuracy": run.test_accuracy, **_measure(run.path, str(unknown / "test"),
                                                           root / "evaluate")}


def fashion_vs_digits(folder: str, epochs: int) -> dict:
    import cnnlab

    run = cnnlab.train(epochs=epochs, log="none", out=str(Path(folder) / "fashion"), quiet=True)
    return {"test accuracy": run.test_accuracy,
            **_measure(run.path, "digits", Path(folder) / "evaluate")}


def cost(run: str, repeats: int) -> dict:
    """Seconds per image of Predictor.predict on flowers12's test photos, with and without the
    detector, alternating so that both see the same machine."""
    import cnnlab

    images = sorted((FLOWERS / "test").rglob("*.jpg"))[:64]
    with_detector, without = cnnlab.load(run), cnnlab.load(run)
    without.detector = None
    decoded = [with_detector.preprocess(path) for path in images]
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(repeats):
        for name, predictor in (("with", with_detector), ("without", without)):
            started = time.perf_counter()
            predictor.predict(decoded, topk=1, batch_size=32)
            times[name].append((time.perf_counter() - started) / len(decoded))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"seconds per image": medians, "ratio": medians["with"] / medians["without"],
            "score": with_detector.card.unknown.score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="flowers-open-set,fashion-vs-digits,cost")
    parser.add_argument("--fine-tune", action="store_true")
    parser.add_argument("--fashion-epochs", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="cnnlab-unknown-"))
    cases = args.cases.split(",")
    results = {}
    if "flowers-open-set" in cases:
        results["flowers-open-set"] = in_own_process(flowers_open_set, str(folder / "flowers"),
                                                     args.fine_tune)
    if "fashion-vs-digits" in cases:
        results["fashion-vs-digits"] = in_own_process(fashion_vs_digits, str(folder / "fashion"),
                                                      args.fashion_epochs)
    if "cost" in cases:
        results["cost"] = in_own_process(cost, str(folder / "flowers" / "run"), args.repeats)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
