"""The catalog verbs' settings: `cnnlab summary`, `datasets`, `models` and `layers`."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option


@dataclass(frozen=True)
class SummarySettings:
    input: str | None = option(None, "input CxHxW, e.g. 1x28x28 or 3x32x32 (default: the run's, "
                                     "or 1x28x28)", metavar="CxHxW")
    classes: int | None = option(None, "number of classes (default: the run's, or 10)", minimum=2)


@dataclass(frozen=True)
class DatasetsSettings:
    download: str | None = option(None, "download a dataset into the cache", metavar="NAME")


@dataclass(frozen=True)
class ModelsSettings:
    """`cnnlab models` takes a pattern and nothing else."""


@dataclass(frozen=True)
class LayersSettings:
    """`cnnlab layers` takes nothing."""
