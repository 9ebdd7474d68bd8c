"""Settings text and choices that several stages share: the device, the split measured, what
runs the network forward, batch sizes and the words for --quiet."""

SPLITS = ("test", "val")  # the held-out splits a trained run is measured on
ENGINES = ("auto", "torch", "onnx")
ENGINE_HELP = ("what runs the network forward: onnx (ONNX Runtime, on a graph exported once into "
               "RUN/engine/ and checked against PyTorch), torch, or auto: onnx on the CPU where the "
               "graph matches PyTorch's outputs, else torch")

DEVICE_HELP = "auto | cpu | cuda | mps"
DATA_HELP = "other data with the same classes (default: the run's own)"
EVAL_BATCH = 256
UNKNOWN_HELP = ("call an image 'unknown' where the model's unknown-image detector says it is none of "
                "its classes (cnnlab calibrate)")
QUIET_HELP = "print nothing but errors (the results are still written)"

# The resizing filters a run may record, by the names its config and card use: the one list
# (data.images.RESAMPLING maps each to PIL's filter of the same name).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")
DEFAULT_INTERPOLATION = "bilinear"
