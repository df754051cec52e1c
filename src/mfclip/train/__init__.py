"""Training: configs, the loop, checkpoints and distributed set-up."""

from .config import DataConfig, OptimConfig, ScheduleConfig, TrainConfig, load_train_config
from .trainer import NonFiniteLossError, Trainer, TrainResult

__all__ = [
    "DataConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "load_train_config",
]
