"""Stage: a run's (or an export's, or a pretrained network's) predictions on new images, folders
and video frames. Names load on first use, so `import cnnlab` stays light."""

from ..base.lazy import lazy_names

__all__ = [*("ClassScore", "Failure", "Prediction", "Predictor", "expand_inputs",
                "load_predictor", "predict_files", "predict_video")]
__getattr__ = lazy_names(__name__, dict.fromkeys(__all__, ".predictor"))
