"""Export a trained run to ONNX (fp32 and int8) and measure that it predicts the same.

cnnlab.models.onnx_graph writes the graph, cnnlab.export.quantize the int8 model (ONNX Runtime's static
quantization), cnnlab.export.parity the comparisons, cnnlab.export.run the verb; the new export folder
takes the old one's place in one step (cnnlab.base.fileio.replacing). Names load on first use (PEP 562),
so `import cnnlab` does not load torch or ONNX.
"""

from ..base.lazy import lazy_names

__all__ = [*("ExportResult", "export_run")]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".run"))
