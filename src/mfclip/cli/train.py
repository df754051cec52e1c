"""``mfclip train CONFIG.yaml [key=value ...]`` (also under ``torchrun -m mfclip train``)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["register"]

log = logging.getLogger(__name__)


def default_run_dir(config_path: str) -> Path:
    return Path("runs") / Path(config_path).stem


def _train(args: argparse.Namespace) -> int:
    from ..train.config import load_train_config
    from ..train.trainer import Trainer

    config = load_train_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.config)
    if not args.resume and (run_dir / "last.json").exists():
        raise ValueError(
            f"run folder {run_dir} already holds a run: pass --resume to continue it, or "
            f"--run-dir for a new one"
        )
    trainer = Trainer(config, run_dir, resume=args.resume, progress=not args.quiet)
    with trainer.env.leaving_when_done():
        result = trainer.fit()
    if trainer.env.is_main:
        if result.interrupted:
            print(f"stopped; resume with: mfclip train {args.config} --run-dir {run_dir} --resume")
        else:
            print(
                f"done: {result.epochs_completed} epoch(s), best {config.select_metric}="
                f"{result.best_metric:.4f}"
                if result.best_metric is not None
                else "done"
            )
            print(f"best model: {result.best_checkpoint}")
            print(f"run folder: {run_dir} (config.yaml, run.json, train_log.csv, val_log.csv)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config (torchrun -m mfclip train ... for DDP)",
    )
    p.add_argument("config", help="training YAML (see configs/)")
    p.add_argument(
        "overrides", nargs="*", help="overrides such as optim.lr=3e-5 model.spa.mode=off"
    )
    p.add_argument("--run-dir", help="output folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir exactly")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)
