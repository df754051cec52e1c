"""Process-group set-up and collectives for training under ``torchrun`` (NCCL on GPU, gloo on CPU).

The helpers live in the library (:mod:`mfclip.distributed`), which evaluation and detection
share; training re-exports them so its modules keep one import. The contrastive loss gathers
its own features (see :mod:`mfclip.model.losses`).
"""

from __future__ import annotations

from ..distributed import DistEnv, pick_device

__all__ = ["DistEnv", "pick_device"]
