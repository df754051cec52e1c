"""Training configuration: a YAML file plus ``key=value`` overrides, validated as dataclasses.

A training YAML has a ``model:`` section (a preset name under ``preset:`` and any model
overrides) and the sections below. The effective config is written into the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..config import ConfigError, MFCLIPConfig, _deep_merge, apply_overrides, from_dict, to_dict
from ..data.transforms import AugmentConfig
from ..evaluate.operating import parse_rule

__all__ = [
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "load_train_config",
]


@dataclass
class DataConfig:
    """Where the training and validation samples come from."""

    #: Manifest (CSV or JSONL) holding the training split and, usually, the validation split.
    manifest: str = ""
    #: Separate manifest for validation; by default the ``val_split`` rows of ``manifest``.
    val_manifest: str | None = None
    #: Folder that relative manifest paths resolve against (default: the manifest's folder).
    root: str | None = None
    train_split: str = "train"
    #: Model selection and the decision threshold use this split only; test data is never read.
    val_split: str = "val"
    #: Per-process batch size (the released code used 24).
    batch_size: int = 24
    eval_batch_size: int = 64
    num_workers: int = 2
    #: Draw real and fake samples equally often.
    balanced: bool = False
    #: Add self-blended pseudo-fakes made from real faces (SBI).
    self_blend: bool = False
    self_blend_p: float = 0.5
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    """Optimiser; defaults are the released code's (Adam, lr 1e-4, weight decay 1e-3)."""

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleConfig:
    """Learning-rate schedule; ``step`` with 15 / 0.1 is the released code's StepLR."""

    name: Literal["step", "cosine", "constant"] = "step"
    #: Epochs between decays of the ``step`` schedule.
    step_size: int = 15
    gamma: float = 0.1
    #: Linear warm-up length in epochs (fractions allowed) for ``cosine`` and ``constant``.
    warmup_epochs: float = 0.0
    #: Final learning rate as a fraction of ``lr`` for ``cosine``.
    min_lr_ratio: float = 0.0


@dataclass
class TrainConfig:
    """A whole training run."""

    model: MFCLIPConfig = field(default_factory=MFCLIPConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    #: Maximum number of epochs (released: 100).
    epochs: int = 100
    #: Stop when the selection metric has not improved for this many epochs (0: never).
    patience: int = 5
    #: Validation metric that picks the best checkpoint: ``auc``, ``ap`` or ``loss`` (the
    #: classifier's cross-entropy; the released code used its total loss).
    select_metric: Literal["auc", "ap", "loss"] = "auc"
    #: Decision threshold rule applied to the calibrated validation probabilities: ``eer``,
    #: ``youden``, ``best_acc``, ``fpr=X`` (flag at most a fraction X of reals), ``tpr=X``,
    #: ``fixed`` (0.5) or ``fixed=X``.
    threshold: str = "eer"
    #: Calibration fitted on validation after model selection: ``temperature`` (default),
    #: ``platt``, ``isotonic`` or ``none``.
    calibration: Literal["temperature", "platt", "isotonic", "none"] = "temperature"
    #: Target accuracy of an uncertain band around the threshold (``null``: no band).
    uncertain_accuracy: float | None = None
    grad_accum: int = 1
    #: Clip the gradient norm to this value (``null``: no clipping).
    clip_grad_norm: float | None = 1.0
    #: Mixed precision on CUDA: ``bf16``, ``fp16`` or ``none`` (ignored on CPU / MPS).
    amp: Literal["none", "bf16", "fp16"] = "none"
    #: ``auto`` picks cuda, then mps, then cpu.
    device: str = "auto"
    seed: int = 0
    #: Cap on optimiser steps per epoch (``null``: the whole training split), for quick runs.
    max_steps_per_epoch: int | None = None
    #: Log training losses every this many optimiser steps.
    log_every: int = 10
    #: Write TensorBoard event files when the ``tensorboard`` package is installed.
    tensorboard: bool = True
    #: Convert BatchNorm layers to SyncBatchNorm under multi-GPU DDP (CUDA only).
    sync_batchnorm: bool = True

    def validate(self) -> TrainConfig:
        self.model.validate()
        if not self.data.manifest:
            raise ConfigError("data.manifest is required (a CSV or JSONL manifest)")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self.data, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1")
        if self.data.num_workers < 0:
            raise ConfigError("data.num_workers must be >= 0")
        if self.epochs < 1 or self.grad_accum < 1 or self.log_every < 1:
            raise ConfigError("epochs, grad_accum and log_every must be >= 1")
        if self.optim.lr <= 0:
            raise ConfigError("optim.lr must be > 0")
        if len(self.optim.betas) != 2:
            raise ConfigError("optim.betas needs two values")
        aug = self.data.augment
        for name, value in vars(aug).items():
            if name.endswith("_p") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"data.augment.{name} must lie in [0, 1], got {value}")
        if aug.patch_shuffle_grid < 2:
            raise ConfigError(
                f"data.augment.patch_shuffle_grid must be >= 2, got {aug.patch_shuffle_grid}"
            )
        low, high = aug.rescale_range
        if not 0 < low <= high:
            raise ConfigError(
                f"data.augment.rescale_range must be 0 < low <= high, got {low, high}"
            )
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ConfigError("max_steps_per_epoch must be >= 1 or null")
        try:
            parse_rule(self.threshold)
        except ValueError as exc:
            raise ConfigError(f"threshold: {exc}") from None
        if self.uncertain_accuracy is not None and not 0.5 < self.uncertain_accuracy < 1:
            raise ConfigError("uncertain_accuracy must lie in (0.5, 1) or be null")
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _resolve_model(data: dict[str, Any]) -> dict[str, Any]:
    """Expand ``model.preset`` into the full preset config, then apply the other model keys."""
    from ..presets import get_preset

    model = dict(data.get("model") or {})
    preset = model.pop("preset", None)
    base = get_preset(preset).to_dict() if preset else MFCLIPConfig().to_dict()
    return {**data, "model": _deep_merge(base, model)}


def load_train_config(
    source: str | Path | dict[str, Any], overrides: list[str] | None = None
) -> TrainConfig:
    """YAML path (or mapping) + ``section.key=value`` overrides -> validated :class:`TrainConfig`.

    Relative data paths written in the YAML resolve against the YAML file's folder; paths given
    as overrides resolve against the current directory, as a shell user expects.
    """
    if isinstance(source, dict):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"training config not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        section = dict(data.get("data") or {})
        for key in ("manifest", "val_manifest", "root"):
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                section[key] = str(path.parent / value)
        data["data"] = section
    data = _resolve_model(apply_overrides(data, overrides or []))
    return from_dict(TrainConfig, data).validate()
