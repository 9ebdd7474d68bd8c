"""`cnnlab compress RUN`: a smaller, faster model within an accuracy budget, measured on this machine.

Candidates are pruned copies of the trained run (Torch-Pruning's dependency-graph pruning) at its
input size or a smaller one, each distilled from the run as teacher (`train --teacher`); every
candidate is exported to ONNX and timed on ONNX Runtime here, the choice is made on the validation
split, and the chosen one becomes a run folder of its own, with static int8 where it pays. Names
load on first use (PEP 562), so `import cnnlab` does not load torch.
"""

from ..base.lazy import lazy_names

_WHERE = {**dict.fromkeys(("Compression", "compress"), ".run"),
          **dict.fromkeys(("COMPRESS_FIGURE", "CandidateRow", "CompressRecord",
                           "read_compression"), ".record"),
          "compression_table": ".show"}
__all__ = sorted(_WHERE)
__getattr__ = lazy_names(__name__, _WHERE)
