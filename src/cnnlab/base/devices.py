"""Device choice and CPU thread settings."""

from __future__ import annotations

import os

import torch

from .errors import CnnlabError


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an explicit device that is missing is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise CnnlabError(f"unknown device {name!r}; choose auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError(f"device {name!r} asked for, but CUDA is not available here; use "
                          f"--device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CnnlabError("device 'mps' asked for, but MPS is not available here")
    return torch.device(name)


def physical_cores() -> int:
    """Physical cores available to this process (hyperthreads slow conv kernels down)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    try:
        with open("/proc/cpuinfo", encoding="ascii") as handle:
            text = handle.read()
        siblings = [int(line.split(":")[1]) for line in text.splitlines() if line.startswith("siblings")]
        cores = [int(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu cores")]
        if siblings and cores and siblings[0] > cores[0]:
            return max(1, available * cores[0] // siblings[0])
    except (OSError, ValueError, IndexError):
        pass
    return max(1, available)


def set_threads(threads: int | None, processes: int = 1) -> int:
    """Intra-op threads: as asked, else the physical cores shared among this machine's training
    processes (more threads than cores makes every conv slower)."""
    count = threads or max(1, physical_cores() // processes)
    torch.set_num_threads(count)
    return count
