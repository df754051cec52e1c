"""Saved models on disk: where a source points, what a model folder holds, and clear errors.

A *source* is a model folder (``config.json`` + ``model.safetensors`` + tokenizer), a training
run folder (``best.json`` / ``last.json`` point at a checkpoint folder), or a Hugging Face Hub
repo id. Every way a saved model can be unusable (missing, truncated or modified weights,
damaged JSON, a pickle-only folder, a newer format) ends in one :class:`CheckpointError` that
names the file and says what to do. Written folders get the umask's modes (see
:mod:`mfclip.fileio`), so a model trained by one account can be served by another.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..fileio import publish
from ..version import __version__

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "SavedModel",
    "read_json",
    "read_pointer",
    "read_saved",
    "resolve_source",
    "write_saved",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
#: Weight files that only ``pickle`` can read: mfclip never unpickles a model (it can run code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def read_json(path: Path) -> Any:
    """Parse ``path``; a damaged file names itself, the position and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path} is not UTF-8 text ({exc.reason}): the file is damaged"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
            "the file is damaged or was edited by hand; restore it from the original model"
        ) from None


def read_pointer(run_dir: Path, name: str) -> dict[str, Any] | None:
    """The ``best``/``last`` pointer of a run folder, with ``path`` resolved; ``None`` if absent."""
    path = Path(run_dir) / f"{name}.json"
    if not path.is_file():
        return None
    payload = read_json(path)
    if not isinstance(payload, dict) or "checkpoint" not in payload:
        raise CheckpointError(f"{path} is not a checkpoint pointer (no 'checkpoint' key)")
    payload["path"] = Path(run_dir) / payload["checkpoint"]
    return payload


def _pickle_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)


def _local_model_dir(path: Path) -> Path:
    """A model folder, or the checkpoint a run folder's best (else last) pointer names."""
    if path.is_file():
        hint = (
            "point at the folder that holds it"
            if path.suffix == ".safetensors"
            else ("pass the model folder (config.json + model.safetensors)")
        )
        raise CheckpointError(f"'{path}' is a file, not a model folder: {hint}")
    if (path / CONFIG_NAME).is_file():
        return path
    for name in ("best", "last"):
        pointer = read_pointer(path, name)
        if pointer is not None:
            target = Path(pointer["path"])
            if not (target / CONFIG_NAME).is_file():
                raise CheckpointError(
                    f"{path / (name + '.json')} points at '{target}', which holds no "
                    f"{CONFIG_NAME}: the run folder is incomplete (was it copied in part?)"
                )
            return target
    pickles = _pickle_files(path)
    if pickles:
        raise CheckpointError(
            f"'{path}' holds only pickle weights ({', '.join(pickles[:3])}): mfclip loads "
            f"{WEIGHTS_NAME} only, since unpickling can run arbitrary code. Load the state dict "
            "yourself in a trusted environment and save it with MFCLIP.save_pretrained"
        )
    raise CheckpointError(
        f"'{path}' is neither a saved model (no {CONFIG_NAME}) nor a training run folder "
        "(no best.json / last.json)"
    )


def resolve_source(source: str | os.PathLike) -> Path:
    """Model folder, run folder or hub repo id -> the local folder to read."""
    path = Path(source)
    if path.exists():
        return _local_model_dir(path)
    text = str(source)
    looks_local = text.startswith((".", "/", "~")) or os.sep in text.strip("/").split("/", 1)[-1]
    if looks_local or text.count("/") > 1 or not text.strip():
        raise CheckpointError(f"model '{text}' does not exist (no such file or folder)")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(text)
    except Exception as exc:  # the hub client raises many types; all mean "not fetched"
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise CheckpointError(
            f"'{text}' is not a local model folder or run folder, and could not be fetched "
            f"from the Hugging Face Hub{offline}: {type(exc).__name__}: {exc}"
        ) from exc
    return _local_model_dir(Path(local))


@dataclass
class SavedModel:
    """What a model folder holds, checked: its metadata and its weights."""

    directory: Path
    meta: dict[str, Any]
    state: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["model"]

    @property
    def clip_config(self) -> dict[str, Any]:
        return self.meta["clip_config"]

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.meta.get("training") or {})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_meta(directory: Path) -> dict[str, Any]:
    """The checked ``config.json`` of a model folder."""
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise CheckpointError(
            f"'{directory}' is not a saved MFCLIP model: {CONFIG_NAME} is missing"
        )
    meta = read_json(cfg_path)
    if not isinstance(meta, dict) or meta.get("architecture") != "MFCLIP" or "model" not in meta:
        raise CheckpointError(
            f"{cfg_path} does not describe an MFCLIP model (a transformers or open_clip config? "
            "mfclip loads folders written by save_pretrained, 'mfclip model create' or 'mfclip "
            "train')"
        )
    if "clip_config" not in meta:
        raise CheckpointError(f"{cfg_path} lacks 'clip_config': the file is incomplete")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path} has format version {meta['format_version']}; this mfclip "
            f"({__version__}) reads up to {FORMAT_VERSION}: upgrade mfclip"
        )
    return meta


def read_saved(directory: Path) -> SavedModel:
    """Read and check a model folder; raises :class:`CheckpointError` naming the bad file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = read_meta(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        pickles = _pickle_files(directory)
        extra = f" (it holds pickle files {', '.join(pickles[:3])}, which mfclip does not load)"
        raise CheckpointError(
            f"'{directory}' has no {WEIGHTS_NAME}{extra if pickles else ''}: copy the whole "
            "model folder"
        )
    expected = meta.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise CheckpointError(
            f"{weights} does not match the checksum recorded in {CONFIG_NAME}: it was modified "
            "or damaged after saving (re-copy it from the original model)"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights} is truncated or not a safetensors file ({exc}): the copy is incomplete "
            "or damaged; re-copy it from the original model"
        ) from None
    return SavedModel(directory, meta, state)


def write_saved(
    directory: str | os.PathLike,
    meta: dict[str, Any],
    state: dict[str, Any],
    extra_files: dict[str, str],
    tokenizer: Any,
) -> Path:
    """Write a model folder atomically: everything goes to a staging folder, then moves in.

    ``meta`` gains ``format_version``, the package version and the weights' SHA-256 (checked
    on load, so a modified file is reported instead of loaded).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        meta = {
            "format_version": FORMAT_VERSION,
            "mfclip_version": __version__,
            "architecture": "MFCLIP",
            **meta,
            "weights_sha256": _sha256(staging / WEIGHTS_NAME),
        }
        (staging / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        tokenizer.save_pretrained(str(staging))
        for name, text in extra_files.items():
            (staging / name).write_text(text)
        publish(staging)
        directory.mkdir(parents=True, exist_ok=True)
        for item in staging.iterdir():
            os.replace(item, directory / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
