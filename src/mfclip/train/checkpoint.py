"""Run-folder checkpoints: model directories plus a resume file, switched atomically.

Layout of a run folder::

    config.yaml          effective training config
    run.json             package version, git commit, seed, command line
    checkpoints/<tag>/   a saved model (config.json, model.safetensors, tokenizer, ...)
                         plus resume.pt (optimizer, scheduler, RNG, sampler position)
    last.json, best.json pointers to the newest and the best checkpoint

A checkpoint directory is complete before its pointer is replaced with ``os.replace``, so an
interruption at any moment leaves the previous pointer valid. Every file gets the umask's
permissions (:mod:`mfclip.fileio`), so another account can read the model. Pointers are read
with :func:`mfclip.model.persistence.read_pointer`.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..fileio import atomic_write, atomic_write_text
from ..model.persistence import read_pointer
from ..version import __version__

if TYPE_CHECKING:
    from ..model.mfclip import MFCLIP

__all__ = [
    "capture_rng",
    "load_resume",
    "prune_checkpoints",
    "restore_rng",
    "save_checkpoint",
    "save_resume",
    "write_pointer",
    "write_run_info",
]

RESUME_NAME = "resume.pt"


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and CUDA) as plain, safe-to-load data."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(directory: Path, state: dict[str, Any]) -> None:
    """Write the resume file of a checkpoint (tensors and plain data only: loads safely)."""
    atomic_write(directory / RESUME_NAME, lambda tmp: torch.save(state, tmp))


def load_resume(directory: Path) -> dict[str, Any]:
    path = directory / RESUME_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this checkpoint cannot be resumed")
    return torch.load(path, map_location="cpu", weights_only=True)


def save_checkpoint(
    run_dir: Path, model: MFCLIP, tag: str, resume: dict[str, Any], info: dict[str, Any]
) -> Path:
    """Save ``model`` (with ``info`` as its training record) and its resume file under ``tag``."""
    directory = run_dir / "checkpoints" / tag
    model.training_info = dict(info)
    model.save_pretrained(directory)
    save_resume(directory, resume)
    return directory


def write_pointer(run_dir: Path, name: str, checkpoint: Path, info: dict[str, Any]) -> None:
    """Point ``<name>.json`` at ``checkpoint`` (relative), atomically."""
    payload = {"checkpoint": str(checkpoint.relative_to(run_dir)), **info}
    atomic_write_text(run_dir / f"{name}.json", json.dumps(payload, indent=2) + "\n")


def prune_checkpoints(run_dir: Path, keep: set[Path] | None = None) -> None:
    """Delete checkpoint directories no pointer refers to (``keep``: the best and last ones)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return
    if keep is None:
        pointers = (read_pointer(run_dir, name) for name in ("best", "last"))
        keep = {Path(p["path"]) for p in pointers if p}
    keep = {p.resolve() for p in keep}
    for child in root.iterdir():
        if child.is_dir() and child.resolve() not in keep:
            shutil.rmtree(child, ignore_errors=True)


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


def write_run_info(run_dir: Path, config_yaml: str, info: dict[str, Any]) -> None:
    """``config.yaml`` and ``run.json`` (version, commit, command line, ``info``) of a run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config_yaml)
    record = {
        "mfclip_version": __version__,
        "git_commit": _git_commit(),
        **info,
        "torch": torch.__version__,
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(record, indent=2) + "\n")
