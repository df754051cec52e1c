"""CLIP towers from Hugging Face ``transformers``: by hub id, local directory, or built-in.

Real weights (``openai/clip-vit-base-patch16``) and the offline ``tiny`` backbone go through
the same ``from_pretrained`` path: ``tiny`` is built once (random init, seeded, with a BPE
tokenizer trained on the prompt vocabulary), saved to the cache, then loaded like any other
checkpoint. That keeps tests honest about the loading code users run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import BackboneConfig, PreprocessConfig
from ..errors import BackboneNotFoundError
from ..fileio import publish
from ..prompts import prompt_vocabulary

__all__ = [
    "BUILTIN_BACKBONES",
    "Backbone",
    "BackboneNotFoundError",
    "build_prompt_tokenizer",
    "cache_dir",
    "clip_from_config",
    "load_backbone",
    "load_tokenizer",
    "prompt_clip_config",
    "quiet_hub",
    "tiny_backbone_dir",
]

BUILTIN_BACKBONES = ("tiny", "scratch-b32")
TINY_VERSION = "tiny-v1"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class Backbone:
    """What a backbone load yields: the CLIP model, its tokenizer, and its preprocessing."""

    clip: nn.Module
    tokenizer: Any
    preprocess: PreprocessConfig
    source: str


def cache_dir() -> Path:
    """Where built-in backbones are materialised (``$MFCLIP_CACHE`` or ``~/.cache/mfclip``)."""
    root = os.environ.get("MFCLIP_CACHE") or Path.home() / ".cache" / "mfclip"
    return Path(root)


def build_prompt_tokenizer(vocab_size: int = 1024, context_length: int = 77) -> Any:
    """A byte-level BPE tokenizer trained on the prompt vocabulary.

    Byte-level, so any generator name a user's data carries still tokenizes; CLIP's layout of
    special tokens (``<|startoftext|> ... <|endoftext|>``, padded with ``<|endoftext|>``).
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [p.lower() for p in prompt_vocabulary()]
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id, eos_id = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, bos_id), (EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
        model_max_length=context_length,
    )


def prompt_clip_config(
    tokenizer: Any,
    text: dict[str, Any] | None = None,
    vision: dict[str, Any] | None = None,
    projection_dim: int = 512,
) -> Any:
    """A ``CLIPConfig`` whose text tower fits ``tokenizer`` (vocabulary size, special ids).

    ``text`` and ``vision`` override the ``transformers`` defaults (ViT-B/32 sizes).
    """
    from transformers import CLIPConfig

    text_config = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        **(text or {}),
    }
    return CLIPConfig(
        text_config=text_config, vision_config=vision or {}, projection_dim=projection_dim
    )


def _tiny_clip_config(tokenizer: Any) -> Any:
    small = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    return prompt_clip_config(
        tokenizer,
        text={**small, "num_attention_heads": 2, "max_position_embeddings": 77},
        vision={**small, "num_attention_heads": 2, "image_size": 224, "patch_size": 32},
        projection_dim=64,
    )


def _save_preprocess(directory: Path, image_size: int) -> None:
    """Write a CLIP-style ``preprocessor_config.json`` (the metadata users' tools read)."""
    pre = PreprocessConfig(image_size=image_size, resize=image_size)
    meta = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": pre.resize},
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_normalize": True,
        "image_mean": pre.mean,
        "image_std": pre.std,
        "resample": 3,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(meta, indent=2) + "\n")


def tiny_backbone_dir() -> Path:
    """Build the ``tiny`` backbone into the cache once (atomically) and return its directory."""
    from transformers import CLIPModel

    target = cache_dir() / "backbones" / TINY_VERSION
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        tokenizer = build_prompt_tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = CLIPModel(_tiny_clip_config(tokenizer))
        with quiet_hub():
            model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _save_preprocess(staging, 224)
        publish(staging)  # mkdtemp's 0700 would lock other accounts out of the shared cache
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Hide ``transformers``' per-file progress bars while mfclip loads or saves weights."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _not_found(name: str, exc: BaseException) -> BackboneNotFoundError:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    return BackboneNotFoundError(
        f"could not load the CLIP backbone '{name}': it is not a local directory with a "
        f"config.json, and it could not be fetched from the Hugging Face Hub"
        f"{' (HF_HUB_OFFLINE is set)' if offline else ''}. Reason: {type(exc).__name__}: {exc}\n"
        f"To provide it: download it once where there is internet "
        f"(`huggingface-cli download {name}`) and copy the Hugging Face cache, or save it with "
        f"`CLIPModel.from_pretrained(...).save_pretrained(DIR)` plus the tokenizer and pass DIR "
        f"as backbone.name; for offline tests use backbone.name=tiny "
        f"(built-in: {', '.join(BUILTIN_BACKBONES)})."
    )


def read_preprocess(
    source: str | Path, image_size: int, revision: str | None = None
) -> PreprocessConfig:
    """Preprocessing metadata from a ``preprocessor_config.json``; CLIP defaults otherwise."""
    pre = PreprocessConfig(image_size=image_size, resize=image_size)
    path = Path(source) / "preprocessor_config.json"
    meta: dict[str, Any] | None = None
    if path.is_file():
        meta = json.loads(path.read_text())
    elif not Path(source).exists():
        try:
            from huggingface_hub import hf_hub_download

            meta = json.loads(
                Path(
                    hf_hub_download(str(source), "preprocessor_config.json", revision=revision)
                ).read_text()
            )
        except Exception:
            meta = None
    if meta:
        pre.mean = [float(v) for v in meta.get("image_mean", pre.mean)]
        pre.std = [float(v) for v in meta.get("image_std", pre.std)]
        size = meta.get("size", {})
        if isinstance(size, dict) and "shortest_edge" in size:
            pre.resize = int(size["shortest_edge"])
        elif isinstance(size, int):
            pre.resize = size
    return pre


def load_tokenizer(source: str | Path, revision: str | None = None) -> Any:
    """The tokenizer saved beside a backbone or model (``AutoTokenizer``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source), revision=revision)


def clip_from_config(config: dict[str, Any]) -> nn.Module:
    """An uninitialised-weights ``CLIPModel`` from a saved config dict (no hub access)."""
    from transformers import CLIPConfig, CLIPModel

    return CLIPModel(CLIPConfig.from_dict(config))


def _scratch_b32() -> Backbone:
    """The released code's setting: ViT-B/32-sized CLIP, random init, prompt tokenizer.

    The token table keeps CLIP's 49408 rows, as in the released model (and its size).
    """
    from transformers import CLIPModel

    tokenizer = build_prompt_tokenizer()
    config = prompt_clip_config(tokenizer, text={"vocab_size": 49408}, vision={"patch_size": 32})
    return Backbone(CLIPModel(config), tokenizer, PreprocessConfig(), "scratch-b32")


def load_backbone(cfg: BackboneConfig) -> Backbone:
    """Load CLIP model + tokenizer + preprocessing for ``cfg.name``; one clear error if absent."""
    from transformers import CLIPConfig, CLIPModel

    name = cfg.name
    if name == "scratch-b32":
        return _scratch_b32()
    source: str | Path = tiny_backbone_dir() if name == "tiny" else name
    local = Path(source).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise BackboneNotFoundError(
                f"backbone directory '{local}' has no config.json; expected a directory written by "
                f"CLIPModel.save_pretrained (config.json, model.safetensors, tokenizer files)"
            )
        source = local
    try:
        if cfg.pretrained:
            with quiet_hub():
                clip = CLIPModel.from_pretrained(str(source), revision=cfg.revision)
        else:
            clip = CLIPModel(CLIPConfig.from_pretrained(str(source), revision=cfg.revision))
        tokenizer = load_tokenizer(source, revision=cfg.revision)
    except (OSError, ValueError) as exc:
        raise _not_found(name, exc) from exc
    pre = read_preprocess(source, clip.config.vision_config.image_size, cfg.revision)
    return Backbone(clip, tokenizer, pre, str(source))
