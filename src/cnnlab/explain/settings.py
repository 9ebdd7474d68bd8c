"""`cnnlab explain`'s settings and methods."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.errors import CnnlabError, unknown
from ..base.settings import option
from ..config.common import DEVICE_HELP, QUIET_HELP, SPLITS

EXPLAIN_METHODS = ("feature-maps", "filters", "saliency", "integrated-gradients", "gradcam",
                   "occlusion", "embedding", "hierarchy")
# The methods that explain the model itself (and its data), so they need no image.
WITHOUT_IMAGES = ("filters", "embedding", "hierarchy")


def explain_methods(text: str) -> list[str]:
    """'saliency,gradcam' -> the methods in order; 'all' -> every one."""
    methods = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name not in (*EXPLAIN_METHODS, "all"):
            raise unknown("explain method", name, (*EXPLAIN_METHODS, "all"))
        methods.extend(EXPLAIN_METHODS if name == "all" else [name])
    if not methods:
        raise CnnlabError(f"--method names no method; choose from {', '.join(EXPLAIN_METHODS)}")
    return list(dict.fromkeys(methods))


@dataclass(frozen=True)
class ExplainSettings:
    method: str = option("gradcam", " | ".join((*EXPLAIN_METHODS, "all")) + "; several: "
                                    "saliency,gradcam")
    layer: str | None = option(None, "layer name (see --list-layers); default: every conv layer / "
                                     "the last one for gradcam")
    target: str | int | None = option(None, "class name or index to explain, or several: cat,dog "
                                            "(default: the predicted class)")
    shared_scale: bool = option(False, "one colour scale for every map of the call (compare "
                                       "images or targets); default: each map to its own peak")
    out: str | None = option(None, "output folder (default RUN/explain)", metavar="DIR")
    split: str = option("test", "embedding: the split mapped", choices=SPLITS, kind="split")
    limit: int = option(2000, "embedding: images to map; hierarchy: training (and validation) "
                              "images scanned", minimum=1)
    projection: str = option("tsne", "embedding: tsne | pca", choices=("tsne", "pca"),
                             kind="projection")
    list_layers: bool = option(False, "print the layer names and exit")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
