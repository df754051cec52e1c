"""Device choice and mixed precision, shared by every command: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["AMP_MODES", "autocast", "pick_device"]

AMP_MODES = ("none", "fp16", "bf16")


def pick_device(name: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK``, then ``mps``, then ``cpu``; otherwise as given.

    Asking for a device that is not there fails here, with the reason, rather than at the first
    tensor moved to it.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' was requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``amp`` (``none``, ``bf16``, ``fp16``); AMP runs on CUDA only."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)
