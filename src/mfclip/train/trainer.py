"""The training loop: validation-only model selection, exact resume, DDP, AMP, clean stops.

Honest by construction: the trainer reads the training and validation splits only, picks the
best checkpoint on validation (AUC by default), fixes the decision threshold on validation and
stores it with the model. Test data is for ``mfclip evaluate``.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..data.dataset import ManifestDataset, collate
from ..data.sampler import BalancedSampler
from ..data.sbi import SelfBlend
from ..data.transforms import build_eval_transform, build_train_transform
from ..errors import NonFiniteLossError
from ..evaluate import metrics
from ..factory import create_model
from ..model.mfclip import MFCLIP
from ..version import __version__
from .checkpoint import (
    atomic_write_text,
    capture_rng,
    load_resume,
    prune_checkpoints,
    read_pointer,
    restore_rng,
    save_resume,
    write_pointer,
)
from .config import TrainConfig
from .distributed import DistEnv, gather_no_grad, gather_with_grad
from .optim import build_optimizer, build_scheduler

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


class _SkipSampler(Sampler[int]):
    """Yields an epoch's indices from position ``skip`` on (mid-epoch resume)."""

    def __init__(self, base: Sampler[int], skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.base):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


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
        self.global_step = 0
        self.model: MFCLIP | None = None

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
        import random

        random.seed(seed)

    def _build_model(self) -> MFCLIP:
        torch.manual_seed(self.cfg.seed)  # identical initial weights on every rank
        return create_model(self.cfg.model)

    def _datasets(self, model: MFCLIP) -> tuple[ManifestDataset, ManifestDataset]:
        d = self.cfg.data
        pre = model.config.preprocess
        common = dict(
            tokenizer=model.tokenizer if model.text is not None else None,
            levels=model.levels,
            context_length=model.config.fle.context_length,
            root=d.root,
        )
        blend = SelfBlend(p=d.self_blend_p) if d.self_blend else None
        train = ManifestDataset(
            d.manifest,
            build_train_transform(pre, d.augment),
            split=d.train_split,
            seed=self.cfg.seed,
            self_blend=blend,
            **common,
        )
        val_source = d.val_manifest or d.manifest
        try:
            val = ManifestDataset(
                val_source, build_eval_transform(pre), split=d.val_split, **common
            )
        except ValueError as exc:
            raise ValueError(
                f"{val_source}: no '{d.val_split}' rows: model selection needs validation data "
                f"(the test split is never used for it); set data.val_split or data.val_manifest"
            ) from exc
        return train, val

    def _train_sampler(self, dataset: ManifestDataset, epoch: int) -> Sampler[int]:
        env = self.env
        if self.cfg.data.balanced:
            sampler: Any = BalancedSampler(
                dataset.labels, num_replicas=env.world_size, rank=env.rank, seed=self.cfg.seed
            )
        else:
            sampler = DistributedSampler(
                dataset,
                num_replicas=env.world_size,
                rank=env.rank,
                shuffle=True,
                seed=self.cfg.seed,
            )
        sampler.set_epoch(epoch)
        return sampler

    def _loader(
        self, dataset: ManifestDataset, sampler: Sampler[int], batch_size: int, epoch: int
    ) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.env.device.type == "cuda",
            # A private generator: worker seeding never consumes the global RNG, so resuming
            # mid-run leaves dropout and friends exactly where they were.
            generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch),
            persistent_workers=False,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        amp = self.cfg.amp
        if amp == "none" or self.env.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def _write_run_info(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.run_dir / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
        )
        info = {
            "mfclip_version": __version__,
            "git_commit": _git_commit(),
            "seed": self.cfg.seed,
            "world_size": self.env.world_size,
            "device": str(self.env.device),
            "torch": torch.__version__,
            "argv": sys.argv,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        import json

        atomic_write_text(self.run_dir / "run.json", json.dumps(info, indent=2) + "\n")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def validate(self, model: MFCLIP, dataset: ManifestDataset) -> dict[str, Any]:
        """Scores of the validation split (sharded over ranks, gathered), metrics, threshold.

        ``loss`` is the classifier's mean cross-entropy on the split.
        """
        env = self.env
        indices = list(range(env.rank, len(dataset), env.world_size))
        loader = DataLoader(
            torch.utils.data.Subset(dataset, indices),
            batch_size=self.cfg.data.eval_batch_size,
            num_workers=self.cfg.data.num_workers,
            collate_fn=collate,
        )
        was_training = model.training
        model.eval()
        rows: list[tuple[int, int, float]] = []
        loss_sum, loss_n = 0.0, 0
        for batch in loader:
            if batch is None:
                continue
            images = batch["image"].to(env.device, non_blocking=True)
            labels = batch["label"].to(env.device)
            with self._autocast():
                out = model(images)
            # Per-sample cross-entropy: unlike the contrastive terms it does not depend on how
            # the split is cut into batches (or shared among ranks).
            loss_sum += float(F.cross_entropy(out.logits.float(), labels, reduction="sum"))
            loss_n += len(images)
            probs = out.fake_prob.float().cpu().tolist()
            rows.extend(zip(batch["index"].tolist(), batch["label"].tolist(), probs, strict=True))
        model.train(was_training)
        gathered = env.gather_objects((rows, loss_sum, loss_n))
        all_rows = sorted(r for part in gathered for r in part[0])
        labels = np.array([r[1] for r in all_rows])
        scores = np.array([r[2] for r in all_rows])
        total_n = sum(part[2] for part in gathered)
        result: dict[str, Any] = {
            "n": len(all_rows),
            "loss": sum(part[1] for part in gathered) / max(total_n, 1),
            "auc": metrics.roc_auc(labels, scores),
            "ap": metrics.average_precision(labels, scores),
            "acc@0.5": metrics.accuracy(labels, scores, 0.5),
        }
        if self.cfg.threshold == "eer":
            threshold = metrics.threshold_at_eer(labels, scores)
        elif self.cfg.threshold == "best_acc":
            threshold = metrics.threshold_for_best_accuracy(labels, scores)
        else:
            threshold = 0.5
        if threshold is None or not math.isfinite(threshold):
            threshold = 0.5
        result["threshold"] = float(threshold)
        result["acc@thr"] = metrics.accuracy(labels, scores, threshold)
        return result

    def _is_better(self, value: float, best: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        if best is None:
            return True
        return value < best if self.cfg.select_metric == "loss" else value > best

    # ------------------------------------------------------------------ checkpoints
    def _save(
        self, model: MFCLIP, tag: str, resume_state: dict[str, Any], info: dict[str, Any]
    ) -> Path:
        directory = self.run_dir / "checkpoints" / tag
        model.training_info = dict(info)
        model.save_pretrained(directory)
        save_resume(directory, resume_state)
        return directory

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``epochs``, early stopping, a stop request, or a non-finite loss."""
        cfg, env = self.cfg, self.env
        self._seed()
        model = self._build_model().to(env.device)
        self.model = model
        train_ds, val_ds = self._datasets(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("nothing to train: every parameter is frozen")
        optimizer = build_optimizer(cfg.optim, model)
        steps_per_epoch = self._steps_per_epoch(train_ds)
        scheduler = build_scheduler(cfg.schedule, optimizer, steps_per_epoch, cfg.epochs)
        scaler = torch.amp.GradScaler(enabled=cfg.amp == "fp16" and env.device.type == "cuda")

        start_epoch, start_batch = 0, 0
        best: float | None = None
        bad_epochs = 0
        history: list[dict[str, Any]] = []
        last_pointer = read_pointer(self.run_dir, "last") if self.resume else None
        if self.resume and last_pointer is None:
            raise FileNotFoundError(f"--resume: {self.run_dir} has no last.json to resume from")
        if last_pointer is not None:
            ckpt = Path(last_pointer["path"])
            model.load_weights(load_file(str(ckpt / "model.safetensors")), source=str(ckpt))
            state = load_resume(ckpt)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            start_epoch, start_batch = state["epoch"], state["batch"]
            self.global_step = state["global_step"]
            best, bad_epochs, history = state["best"], state["bad_epochs"], state["history"]
            restore_rng(state["rng"][min(env.rank, len(state["rng"]) - 1)])
            if env.is_main:
                log.info("resumed from %s (epoch %d, batch %d)", ckpt, start_epoch, start_batch)
        if env.is_main:
            self._write_run_info()

        ddp_model: nn.Module = model
        if env.distributed:
            if cfg.sync_batchnorm and env.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ddp_model = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[env.device.index] if env.device.type == "cuda" else None,
            )

        csv_path = self.run_dir / "train_log.csv"
        writer = self._tensorboard() if env.is_main else None
        stopped_early = interrupted = False
        epoch = start_epoch
        with self._signals():
            for epoch in range(start_epoch, cfg.epochs):
                skip = start_batch if epoch == start_epoch else 0
                finished = self._train_epoch(
                    ddp_model, model, optimizer, scheduler, scaler, train_ds, epoch, skip,
                    steps_per_epoch, csv_path, writer, best, bad_epochs, history,
                )  # fmt: skip
                if not finished:
                    interrupted = True
                    break
                val = self.validate(model, val_ds)
                val["epoch"] = epoch + 1
                history.append(val)
                metric = val[cfg.select_metric]
                improved = self._is_better(metric, best)
                if improved:
                    best, bad_epochs = metric, 0
                else:
                    bad_epochs += 1
                info = {
                    "threshold": val["threshold"],
                    "threshold_rule": cfg.threshold,
                    "epoch": epoch + 1,
                    "global_step": self.global_step,
                    "validation": {k: v for k, v in val.items() if k != "epoch"},
                    "select_metric": cfg.select_metric,
                }
                state = self._resume_state(
                    optimizer, scheduler, scaler, epoch + 1, 0, best, bad_epochs, history
                )
                if env.is_main:
                    self._log_epoch(val, writer)
                    directory = self._save(model, f"epoch-{epoch + 1:03d}", state, info)
                    write_pointer(self.run_dir, "last", directory, {"epoch": epoch + 1})
                    if improved:
                        write_pointer(
                            self.run_dir,
                            "best",
                            directory,
                            {"epoch": epoch + 1, cfg.select_metric: metric},
                        )
                    self._prune()
                env.barrier()
                if cfg.patience and bad_epochs >= cfg.patience:
                    stopped_early = True
                    if env.is_main:
                        log.info("early stopping: no improvement for %d epochs", bad_epochs)
                    break
        if writer is not None:
            writer.close()
        best_ptr = read_pointer(self.run_dir, "best")
        last_ptr = read_pointer(self.run_dir, "last")
        return TrainResult(
            run_dir=self.run_dir,
            best_checkpoint=Path(best_ptr["path"]) if best_ptr else None,
            last_checkpoint=Path(last_ptr["path"]) if last_ptr else None,
            best_metric=best,
            epochs_completed=len(history),
            stopped_early=stopped_early,
            interrupted=interrupted,
            history=history,
        )

    def _steps_per_epoch(self, dataset: ManifestDataset) -> int:
        per_rank = math.ceil(len(dataset) / self.env.world_size)
        batches = math.ceil(per_rank / self.cfg.data.batch_size)
        steps = max(1, batches // self.cfg.grad_accum)
        if self.cfg.max_steps_per_epoch is not None:
            steps = min(steps, self.cfg.max_steps_per_epoch)
        return steps

    def _resume_state(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: Any,
        epoch: int,
        batch: int,
        best: float | None,
        bad_epochs: int,
        history: list[dict[str, Any]],
    ) -> dict[str, Any]:
        return {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "batch": batch,
            "global_step": self.global_step,
            "best": best,
            "bad_epochs": bad_epochs,
            "history": history,
            "rng": self.env.gather_objects(capture_rng()),
        }

    def _prune(self) -> None:
        keep = {
            Path(p["path"]) for p in (read_pointer(self.run_dir, n) for n in ("best", "last")) if p
        }
        prune_checkpoints(self.run_dir, keep)

    def _tensorboard(self) -> Any:
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: logging to CSV only")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _log_epoch(self, val: dict[str, Any], writer: Any) -> None:
        keys = ("epoch", "auc", "ap", "loss", "acc@thr", "threshold", "n")
        log.info(
            "epoch %d validation: auc=%.4f ap=%.4f loss=%.4f acc@thr=%.4f (thr=%.3f, n=%d)",
            *(val[k] for k in keys),
        )
        self._append_csv(
            self.run_dir / "val_log.csv",
            {
                k: val[k]
                for k in ("epoch", "n", "loss", "auc", "ap", "acc@0.5", "acc@thr", "threshold")
            },
        )
        if writer is not None:
            for key in ("loss", "auc", "ap", "acc@thr"):
                writer.add_scalar(f"val/{key}", val[key], self.global_step)

    def _log_train(
        self, csv_path: Path, writer: Any, epoch: int, lr: float, window: list[dict[str, float]]
    ) -> None:
        """Mean of the loss terms since the last log line, to CSV and TensorBoard."""
        if not window:
            return
        means = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        self._append_csv(
            csv_path, {"epoch": epoch + 1, "step": self.global_step, "lr": lr, **means}
        )
        if writer is not None:
            for key, value in {"lr": lr, **means}.items():
                writer.add_scalar(f"train/{key}", value, self.global_step)

    @staticmethod
    def _append_csv(path: Path, row: dict[str, Any]) -> None:
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _train_epoch(
        self,
        ddp_model: nn.Module,
        model: MFCLIP,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: Any,
        dataset: ManifestDataset,
        epoch: int,
        skip_batches: int,
        steps_per_epoch: int,
        csv_path: Path,
        writer: Any,
        best: float | None,
        bad_epochs: int,
        history: list[dict[str, Any]],
    ) -> bool:
        """One epoch from batch ``skip_batches``; ``False`` when stopped by a request."""
        from tqdm.auto import tqdm

        cfg, env = self.cfg, self.env
        dataset.set_epoch(epoch)
        sampler = _SkipSampler(
            self._train_sampler(dataset, epoch), skip_batches * cfg.data.batch_size
        )
        loader = self._loader(dataset, sampler, cfg.data.batch_size, epoch)
        total_batches = steps_per_epoch * cfg.grad_accum
        bar = tqdm(
            total=total_batches,
            initial=skip_batches,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not (self.progress and env.is_main),
            unit="batch",
            dynamic_ncols=True,
        )
        ddp_model.train()
        optimizer.zero_grad(set_to_none=True)
        batch_index = skip_batches
        window: list[dict[str, float]] = []
        started, seen = time.perf_counter(), 0
        for batch in loader:
            if batch_index >= total_batches:
                break
            batch_index += 1
            if batch is None:
                bar.update(1)
                continue
            images = batch["image"].to(env.device, non_blocking=True)
            labels = batch["label"].to(env.device)
            tokens = batch.get("tokens")
            boundary = batch_index % cfg.grad_accum == 0
            sync = boundary or not env.distributed
            ctx = contextlib.nullcontext() if sync else ddp_model.no_sync()
            with ctx, self._autocast():
                out = ddp_model(images, tokens)
                if env.distributed and out.text_features is not None:
                    self._globalise_contrastive(model, out, tokens.to(env.device))
                loss = model.loss(out, labels)
                if not torch.isfinite(loss.total):
                    terms = ", ".join(f"{k}={v:.4g}" for k, v in loss.as_dict().items())
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {epoch + 1}, batch {batch_index} ({terms}); "
                        f"the last good checkpoint is kept in {self.run_dir}. Try a lower "
                        f"optim.lr, amp=none, or clip_grad_norm."
                    )
                scaler.scale(loss.total / cfg.grad_accum).backward()
            window.append(loss.as_dict())
            seen += len(images)
            bar.update(1)
            if not boundary:
                continue
            if cfg.clip_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            self.global_step += 1
            rate = seen * env.world_size / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f"{window[-1]['total']:.4f}", img_s=f"{rate:.1f}")
            last_step = batch_index >= total_batches
            if (self.global_step % cfg.log_every == 0 or last_step) and env.is_main:
                self._log_train(csv_path, writer, epoch, scheduler.get_last_lr()[0], window)
                window = []
            if self.on_step is not None:
                self.on_step(self, self.global_step)
            stop = env.all_reduce_max(1.0 if self._stop_requested else 0.0) > 0
            if stop:
                bar.close()
                state = self._resume_state(
                    optimizer, scheduler, scaler, epoch, batch_index, best, bad_epochs, history
                )
                if env.is_main:
                    directory = self._save(
                        model, f"step-{self.global_step:07d}", state, {"epoch": epoch}
                    )
                    write_pointer(
                        self.run_dir, "last", directory, {"epoch": epoch, "batch": batch_index}
                    )
                    self._prune()
                    log.info(
                        "stopped at epoch %d, batch %d; resume with --resume",
                        epoch + 1,
                        batch_index,
                    )
                env.barrier()
                return False
        bar.close()
        if dataset.bad_count and env.is_main:
            log.warning(
                "%d unreadable file(s) skipped so far (see the warnings above)", dataset.bad_count
            )
        return True

    def _globalise_contrastive(self, model: MFCLIP, out: Any, tokens: torch.Tensor) -> None:
        """Recompute the contrastive logits over the global batch (all ranks' samples)."""
        env = self.env
        sizes = env.gather_objects(len(tokens))
        if len(set(sizes)) != 1:
            log.debug("unequal local batches %s: contrastive loss stays local this step", sizes)
            return
        visual = gather_with_grad(out.visual_features, env)
        text = gather_with_grad(out.text_features, env)
        all_tokens = gather_no_grad(tokens, env)
        logits = model.contrastive_logits(visual, text, all_tokens)
        out.logits_per_image, out.logits_per_text = logits, logits.t()
