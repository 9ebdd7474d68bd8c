"""Export a trained run to ONNX (fp32 and int8) and measure that it predicts the same.

cnnlab.export.convert writes the graph, cnnlab.export.quantize the int8 model (ONNX Runtime's static
quantization), cnnlab.export.parity the comparisons, cnnlab.export.run the verb. Names load on
first use (PEP 562), so `import cnnlab` does not load torch or ONNX.
"""

from importlib import import_module

__all__ = ["ExportResult", "export_run"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module(".run", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
