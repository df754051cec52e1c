"""Run-folder checkpoints: model directories plus a resume file, switched atomically.

Layout of a run folder::

    config.yaml          effective training config
    run.json             package version, git commit, seed, command line
    checkpoints/<tag>/   a saved model (config.json, model.safetensors, tokenizer, ...)
                         plus resume.pt (optimizer, scheduler, RNG, sampler position)
    last.json, best.json pointers to the newest and the best checkpoint

A checkpoint directory is complete before its pointer is replaced with ``os.replace``, so an
interruption at any moment leaves the previous pointer valid.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write_text",
    "capture_rng",
    "load_resume",
    "read_pointer",
    "resolve_model_dir",
    "restore_rng",
    "save_resume",
    "write_pointer",
]

RESUME_NAME = "resume.pt"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


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
    fd, tmp = tempfile.mkstemp(prefix="resume-tmp-", suffix=".pt", dir=directory)
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, directory / RESUME_NAME)


def load_resume(directory: Path) -> dict[str, Any]:
    path = directory / RESUME_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: this checkpoint cannot be resumed")
    return torch.load(path, map_location="cpu", weights_only=True)


def write_pointer(run_dir: Path, name: str, checkpoint: Path, info: dict[str, Any]) -> None:
    """Point ``<name>.json`` at ``checkpoint`` (relative), atomically."""
    payload = {"checkpoint": str(checkpoint.relative_to(run_dir)), **info}
    atomic_write_text(run_dir / f"{name}.json", json.dumps(payload, indent=2) + "\n")


def read_pointer(run_dir: Path, name: str) -> dict[str, Any] | None:
    path = run_dir / f"{name}.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    payload["path"] = run_dir / payload["checkpoint"]
    return payload


def prune_checkpoints(run_dir: Path, keep: set[Path]) -> None:
    """Delete checkpoint directories no pointer refers to."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return
    keep = {p.resolve() for p in keep}
    for child in root.iterdir():
        if child.is_dir() and child.resolve() not in keep:
            shutil.rmtree(child, ignore_errors=True)


def resolve_model_dir(path: str | Path) -> Path:
    """A run folder (its best checkpoint, else the last) or a saved model directory."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    for name in ("best", "last"):
        pointer = read_pointer(path, name)
        if pointer is not None:
            return Path(pointer["path"])
    raise FileNotFoundError(
        f"'{path}' is neither a saved model (no config.json) nor a run folder "
        f"(no best.json / last.json)"
    )
