"""Sliding-window inference with attention maps: ``predict(model, image, ...) -> Prediction``."""

from .engine import MODES, check_input, iter_predict, predict
from .prediction import AttentionMap, CancelToken, Prediction

__all__ = ["AttentionMap", "CancelToken", "MODES", "Prediction", "check_input", "iter_predict", "predict"]
