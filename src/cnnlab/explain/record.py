"""RUN/explain/hierarchy/hierarchy.json as a type: what `--method hierarchy` found, per depth, for
the report and for Python (one writer, `write`; one reader, `read`, base.typed's)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..base.fileio import atomic_write_json
from ..base.typed import json_field, read_typed_in, to_json_dict

HIERARCHY_FILE = "hierarchy.json"
SHARE, NON_NEGATIVE = (0, 1), (0, None)


@dataclass(frozen=True)
class ChannelFinding:
    """One channel of a depth: how strongly it fires on the data, the images that excite it most,
    and whether its picture by optimisation came out readable (the reason where it did not)."""

    channel: int = json_field(within=NON_NEGATIVE)
    mean_activation: float
    top_images: tuple[str, ...]  # file names (or "image N"), strongest first
    picture: str | None = None  # "readable", or why not; None: no picture was made


@dataclass(frozen=True)
class DepthFinding:
    layer: str
    depth: int = json_field(within=NON_NEGATIVE)  # its place among the network's depths
    receptive_field: int = json_field(within=NON_NEGATIVE)  # input pixels per side one unit sees
    channels: tuple[ChannelFinding, ...]


@dataclass(frozen=True)
class ProbePoint:
    """The linear probe on one depth's pooled features, of one network."""

    network: str  # "this run", "pretrained, before fine-tuning"
    layer: str
    depth: int = json_field(within=NON_NEGATIVE)
    features: int = json_field(within=NON_NEGATIVE)
    c: float = json_field(within=NON_NEGATIVE)
    train_accuracy: float = json_field(within=SHARE)
    val_accuracy: float = json_field(within=SHARE)


@dataclass(frozen=True)
class HierarchyRecord:
    """What each depth of a run's network has learned."""

    JSON_FORMAT = "cnnlab-hierarchy/1"

    run: str
    data: str
    images: int = json_field(within=NON_NEGATIVE)  # training images scanned for the patches
    depths: tuple[DepthFinding, ...]
    probe: tuple[ProbePoint, ...]
    figures: tuple[str, ...]  # file names in the record's folder
    seconds: float = json_field(within=(0, 1e10))
    folder: Path | None = json_field(None, stored=False)  # where it was read from or written to

    def write(self, folder: Path) -> Path:
        return atomic_write_json(folder / HIERARCHY_FILE, to_json_dict(self))

    @classmethod
    def read(cls, folder: str | Path) -> HierarchyRecord:
        return read_typed_in(cls, folder, HIERARCHY_FILE)

    def probe_of(self, network: str) -> list[ProbePoint]:
        return [point for point in self.probe if point.network == network]
