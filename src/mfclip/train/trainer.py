"""The training loop: validation-only model selection, exact resume, DDP, AMP, clean stops.

Honest by construction: the trainer reads the training and validation splits only, picks the
best checkpoint on validation (AUC by default), fixes the decision threshold on validation and
stores it with the model. Test data is for ``mfclip evaluate``.

The loop's position lives in one :class:`~.state.TrainState`, the run's objects in one
:class:`~.state.RunParts`; data, logs, checkpoints and validation have their own modules.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from ..data.dataset import ManifestDataset
from ..device import autocast
from ..errors import ManifestError, NonFiniteLossError
from ..factory import create_model
from ..model.mfclip import MFCLIP
from ..model.persistence import read_pointer
from .calibrate import calibrate_best
from .checkpoint import (
    load_resume,
    prune_checkpoints,
    save_checkpoint,
    write_pointer,
    write_run_info,
)
from .config import TrainConfig
from .data import build_datasets, steps_per_epoch, train_loader
from .distributed import DistEnv
from .logs import RunLogs
from .optim import build_optimizer, build_scaler, build_scheduler
from .selection import is_better, validate
from .state import RunParts, TrainState

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where the run ended and what validation said."""

    run_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_metric: float | None
    epochs_completed: int
    stopped_early: bool = False
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Runs one training configuration into ``run_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        resume: bool = False,
        on_step: Callable[[Trainer, int], None] | None = None,
        progress: bool = True,
    ) -> None:
        self.cfg = config.validate()
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.on_step = on_step
        self.progress = progress
        self._stop_requested = False
        self.env = DistEnv.setup(config.device)
        self.state = TrainState()
        self.model: MFCLIP | None = None

    @property
    def global_step(self) -> int:
        """Optimiser steps taken so far (over the whole run, resumes included)."""
        return self.state.global_step

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Finish the current optimiser step, save a resumable checkpoint and return."""
        self._stop_requested = True

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM / Ctrl-C save and exit cleanly instead of losing the epoch."""

        def handler(signum: int, frame: Any) -> None:
            log.warning("received signal %d: saving a checkpoint and stopping", signum)
            self.request_stop()

        installed = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                installed[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in installed.items():
                signal.signal(sig, old)

    # ------------------------------------------------------------------ set-up
    def _seed(self) -> None:
        seed = self.cfg.seed + self.env.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def _build_model(self) -> MFCLIP:
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every rank
        return create_model(self.cfg.model)

    def _wrap(self, model: MFCLIP) -> nn.Module:
        """The module the loop calls: ``model`` itself, or its DDP wrapper under torchrun."""
        env = self.env
        if not env.distributed:
            return model
        if self.cfg.sync_batchnorm and env.device.type == "cuda":
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place: the root is no BatchNorm
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == "cuda" else None
        )

    def _setup(self) -> tuple[RunParts, TrainState]:
        """Build the run (and load the last checkpoint when resuming)."""
        cfg, env = self.cfg, self.env
        last = read_pointer(self.run_dir, "last") if self.resume else None
        if self.resume and last is None:
            raise FileNotFoundError(f"--resume: {self.run_dir} has no last.json to resume from")
        self._seed()
        model = self._build_model().to(env.device)
        self.model = model
        train_data, val_data = build_datasets(cfg, model)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("nothing to train: every parameter is frozen")
        optimizer = build_optimizer(cfg.optim, model)
        steps = steps_per_epoch(cfg, env, train_data)
        scheduler = build_scheduler(cfg.schedule, optimizer, steps, cfg.epochs)
        scaler = build_scaler(cfg.amp, env.device)
        payload = None
        if last is not None:
            ckpt = Path(last["path"])
            model.load_weights(load_file(str(ckpt / "model.safetensors")), source=str(ckpt))
            payload = load_resume(ckpt)
        parts = RunParts(
            model=model,
            ddp_model=self._wrap(model),
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            train_data=train_data,
            val_data=val_data,
            steps_per_epoch=steps,
            logs=RunLogs(self.run_dir, cfg.tensorboard, enabled=env.is_main),
        )
        state = TrainState()
        if payload is not None:
            state = parts.restore(payload, env)
            if env.is_main:
                log.info("resumed from %s (%s)", last["path"], state.position())
        return parts, state

    # ------------------------------------------------------------------ evaluation
    def validate(self, model: MFCLIP, dataset: ManifestDataset) -> dict[str, Any]:
        """Validation metrics and threshold (see :func:`mfclip.train.selection.validate`)."""
        return validate(model, dataset, self.cfg, self.env)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``epochs``, early stopping, a stop request, or a non-finite loss."""
        parts, self.state = self._setup()
        state = self.state
        if self.env.is_main:
            info = {
                "seed": self.cfg.seed,
                "world_size": self.env.world_size,
                "device": str(self.env.device),
            }
            config_yaml = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
            write_run_info(self.run_dir, config_yaml, info)
        stopped_early = interrupted = False
        try:
            with self._signals():
                while state.epoch < self.cfg.epochs:
                    if not self._train_epoch(parts, state):
                        interrupted = True
                        break
                    if self._end_epoch(parts, state):
                        stopped_early = True
                        break
        finally:
            parts.logs.close()
        if not interrupted:
            calibrate_best(self.run_dir, self.cfg, self.env, parts.val_data)
        best, last = (read_pointer(self.run_dir, name) for name in ("best", "last"))
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=Path(best["path"]) if best else None,
            last_checkpoint=Path(last["path"]) if last else None,
            best_metric=state.best,
            epochs_completed=len(state.history),
            stopped_early=stopped_early,
            interrupted=interrupted,
            history=state.history,
        )

    def _end_epoch(self, parts: RunParts, state: TrainState) -> bool:
        """Validate, checkpoint and move ``state`` to the next epoch; ``True``: stop early."""
        cfg, env = self.cfg, self.env
        val = self.validate(parts.model, parts.val_data)
        epoch = state.epoch + 1
        val["epoch"] = epoch
        state.history.append(val)
        metric = val[cfg.select_metric]
        improved = is_better(cfg.select_metric, metric, state.best)
        if improved:
            state.best, state.bad_epochs = metric, 0
        else:
            state.bad_epochs += 1
        state.epoch, state.batch = epoch, 0
        info = {
            "threshold": val["threshold"],
            "threshold_rule": cfg.threshold,
            "epoch": epoch,
            "global_step": state.global_step,
            "validation": {k: v for k, v in val.items() if k != "epoch"},
            "select_metric": cfg.select_metric,
        }
        payload = parts.resume_payload(state, env)
        if env.is_main:
            parts.logs.validation(val, state.global_step)
            directory = save_checkpoint(
                self.run_dir, parts.model, f"epoch-{epoch:03d}", payload, info
            )
            write_pointer(self.run_dir, "last", directory, {"epoch": epoch})
            if improved:
                best = {"epoch": epoch, cfg.select_metric: metric}
                write_pointer(self.run_dir, "best", directory, best)
            prune_checkpoints(self.run_dir)
        env.barrier()
        if cfg.patience and state.bad_epochs >= cfg.patience:
            if env.is_main:
                log.info("early stopping: no improvement for %d epochs", state.bad_epochs)
            return True
        return False

    def _save_stopped(self, parts: RunParts, state: TrainState) -> None:
        """Checkpoint mid-epoch after a stop request; ``--resume`` continues at this batch."""
        env = self.env
        payload = parts.resume_payload(state, env)
        if env.is_main:
            tag = f"step-{state.global_step:07d}"
            info = {"epoch": state.epoch}
            directory = save_checkpoint(self.run_dir, parts.model, tag, payload, info)
            pointer = {"epoch": state.epoch, "batch": state.batch}
            write_pointer(self.run_dir, "last", directory, pointer)
            prune_checkpoints(self.run_dir)
            log.info("stopped at %s; resume with --resume", state.position())
        env.barrier()

    def _forward_backward(
        self, parts: RunParts, state: TrainState, batch: dict[str, Any], sync: bool
    ) -> dict[str, float]:
        """Loss of one batch and its (scaled, accumulated) gradients; the loss terms."""
        cfg, env = self.cfg, self.env
        images = batch["image"].to(env.device, non_blocking=True)
        labels = batch["label"].to(env.device)
        synced = sync or not env.distributed  # under grad_accum, DDP syncs on the last batch
        ctx = contextlib.nullcontext() if synced else parts.ddp_model.no_sync()
        with ctx, autocast(cfg.amp, env.device):
            out = parts.ddp_model(images, batch.get("tokens"))
            loss = parts.model.loss(out, labels)
            if not torch.isfinite(loss.total):
                terms = ", ".join(f"{k}={v:.4g}" for k, v in loss.as_dict().items())
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {state.epoch + 1}, batch {state.batch} "
                    f"({terms}); the last good checkpoint is kept in {self.run_dir}. Try a "
                    f"lower optim.lr, amp=none, or clip_grad_norm."
                )
            parts.scaler.scale(loss.total / cfg.grad_accum).backward()
        return loss.as_dict()

    def _optimizer_step(self, parts: RunParts) -> None:
        clip = self.cfg.clip_grad_norm
        if clip:
            parts.scaler.unscale_(parts.optimizer)
            torch.nn.utils.clip_grad_norm_(parts.model.parameters(), clip)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scheduler.step()

    def _train_epoch(self, parts: RunParts, state: TrainState) -> bool:
        """The rest of epoch ``state.epoch`` from batch ``state.batch``; ``False``: stopped."""
        from tqdm.auto import tqdm

        cfg, env = self.cfg, self.env
        loader = train_loader(cfg, env, parts.train_data, state.epoch, state.batch)
        total_batches = parts.steps_per_epoch * cfg.grad_accum
        bar = tqdm(
            total=total_batches,
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
            disable=not (self.progress and env.is_main),
            unit="batch",
            dynamic_ncols=True,
        )
        parts.ddp_model.train()
        parts.optimizer.zero_grad(set_to_none=True)
        window: list[dict[str, float]] = []
        started, seen, attempted = time.perf_counter(), 0, 0
        for batch in loader:
            if state.batch >= total_batches:
                break
            state.batch += 1
            attempted += 1
            if batch is None:
                bar.update(1)
                continue
            boundary = state.batch % cfg.grad_accum == 0
            window.append(self._forward_backward(parts, state, batch, sync=boundary))
            seen += len(batch["image"])
            bar.update(1)
            if not boundary:
                continue
            self._optimizer_step(parts)
            state.global_step += 1
            rate = seen * env.world_size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{window[-1]['total']:.4f}", img_s=f"{rate:.1f}")
            if state.global_step % cfg.log_every == 0 or state.batch >= total_batches:
                lr = parts.scheduler.get_last_lr()[0]
                parts.logs.train(state.epoch, state.global_step, lr, window)
                window = []
            if self.on_step is not None:
                self.on_step(self, state.global_step)
            if env.all_reduce_max(1.0 if self._stop_requested else 0.0) > 0:
                bar.close()
                self._save_stopped(parts, state)
                return False
        bar.close()
        if attempted and env.all_reduce_sum(seen) == 0:
            raise ManifestError(
                f"no training sample of {cfg.data.manifest} could be read "
                f"({parts.train_data.bad_count} unreadable): check that its paths exist, "
                f"or set data.root to the folder they are relative to"
            )
        if parts.train_data.bad_count and env.is_main:
            log.warning(
                "%d unreadable file(s) skipped so far (see the warnings above)",
                parts.train_data.bad_count,
            )
        return True
