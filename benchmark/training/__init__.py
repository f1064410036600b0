"""The one training loop for every method, evaluation-time prediction, devices and seeding."""
from __future__ import annotations

from benchmark.training.device import machine_description, resolve_device, seed_everything
from benchmark.training.loop import TrainResult, group_validation_score, predict, train_method

__all__ = ["TrainResult", "group_validation_score", "machine_description", "predict", "resolve_device",
           "seed_everything", "train_method"]
