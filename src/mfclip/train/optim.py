"""Optimiser, learning-rate schedule (stepped once per optimiser step) and mixed precision."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "build_scaler", "build_scheduler", "lr_factor"]


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (released) or AdamW over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas))


def lr_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, total_epochs: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimiser steps."""
    epoch = step / max(steps_per_epoch, 1)
    if cfg.name == "step":
        return cfg.gamma ** int(epoch // cfg.step_size)
    warmup = cfg.warmup_epochs
    if warmup > 0 and epoch < warmup:
        return (step + 1) / max(warmup * steps_per_epoch, 1)
    if cfg.name == "constant":
        return 1.0
    span = max(total_epochs - warmup, 1e-9)
    progress = min(max((epoch - warmup) / span, 0.0), 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    cfg: ScheduleConfig,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    total_epochs: int = 100,
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg, step, steps_per_epoch, total_epochs)
    )


def build_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16 on CUDA; a pass-through scaler otherwise (same code path)."""
    return torch.amp.GradScaler(enabled=amp == "fp16" and device.type == "cuda")
