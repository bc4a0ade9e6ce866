"""Training and fine-tuning on exported datasets."""

from .trainer import TrainConfig, Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]
