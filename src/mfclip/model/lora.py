"""LoRA adapters on the CLIP towers, through ``peft``.

Applied at construction time from ``config.lora`` so a saved model with adapters reloads with
the same parameters (the adapters are part of the architecture, like any other switch).
"""

from __future__ import annotations

from torch import nn

from ..config import LoRAConfig

__all__ = ["apply_lora"]


def apply_lora(towers: list[nn.Module], cfg: LoRAConfig) -> None:
    """Freeze each tower and inject adapters into its ``cfg.target_modules`` linears."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise RuntimeError(
            "lora.enabled needs the 'peft' package: pip install 'mfclip[lora]'"
        ) from exc
    if not towers:
        raise ValueError("lora.enabled needs CLIP towers (variant: mfclip)")
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
    )
    for tower in towers:
        tower.requires_grad_(False)
        inject_adapter_in_model(lora, tower)
