"""Stage: a run's (or an export's, or a pretrained network's) predictions on new images, folders
and video frames. Names load on first use, so `import cnnlab` stays light."""

from ..base.lazy import lazy_names

# What several stages share (the predictor and its answers) lives in the run room below them.
_FROM_RUN = {"ClassScore": "..run.prediction", "Prediction": "..run.prediction",
             "UnknownVerdict": "..run.prediction", "Predictor": "..run.predictor",
             "load_predictor": "..run.predictor"}
_OWN = dict.fromkeys(("Failure", "expand_inputs", "predict_files", "predict_video"), ".predictor")
__all__ = sorted({**_FROM_RUN, **_OWN})
__getattr__ = lazy_names(__name__, {**_FROM_RUN, **_OWN})
