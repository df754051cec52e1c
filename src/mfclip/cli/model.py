"""``mfclip models``, ``mfclip model create|info`` and ``mfclip config``: presets and saved
models from the shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _models(args: argparse.Namespace) -> int:
    from ..presets import PRESETS, list_models

    for name in list_models():
        preset = PRESETS[name]
        backbone = preset.get("backbone", {}).get("name", "")
        print(f"{name:18s} variant={preset.get('variant', 'mfclip'):8s} backbone={backbone}")
    return 0


def _create(args: argparse.Namespace) -> int:
    from ..factory import create_model

    model = create_model(args.preset, overrides=args.overrides)
    out = model.save_pretrained(args.out)
    print(
        f"saved {model.config.name} "
        f"({model.param_counts()['total'] / 1e6:.2f} M parameters) to {out}"
    )
    return 0


def _load_any(target: str, overrides: list[str]) -> Any:
    """A preset or YAML config is built; anything else is loaded like ``detect --model`` does.

    A bare name that is neither a path nor ``org/name`` goes to the preset lookup, so a
    mistyped preset gets the list of presets rather than a failed hub download.
    """
    from ..factory import create_model
    from ..loading import load_model
    from ..presets import PRESETS

    is_config = target in PRESETS or Path(target).suffix in (".yaml", ".yml")
    if is_config or ("/" not in target and not Path(target).exists()):
        return create_model(target, overrides=overrides)
    if overrides:
        raise ValueError("overrides apply to presets and YAML configs, not to a saved model")
    return load_model(target, device="cpu")


def _info(args: argparse.Namespace) -> int:
    model = _load_any(args.target, args.overrides)
    counts = model.param_counts()
    if args.json:
        print(json.dumps({"config": model.config.to_dict(), "parameters": counts}, indent=2))
        return 0
    print(
        f"model {model.config.name} (variant {model.config.variant}, "
        f"backbone {model.config.backbone.name})"
    )
    for key, value in counts.items():
        print(f"  {key:16s} {value / 1e6:10.3f} M")
    pre = model.config.preprocess
    print(f"  input {pre.image_size}px, mean={pre.mean}, std={pre.std}")
    return 0


def _config_reference(args: argparse.Namespace) -> int:
    from ..config import reference_markdown

    text = reference_markdown() + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    from ..factory import resolve_config

    config = resolve_config(args.target, overrides=args.overrides)
    print(yaml.safe_dump({"model": config.to_dict()}, sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the named model presets")
    p.set_defaults(func=_models)

    model = sub.add_parser("model", help="create or inspect models")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    c = msub.add_parser("create", help="build a preset (random heads) and save it to a directory")
    c.add_argument("preset", help="preset name (see `mfclip models`) or a YAML model config")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("overrides", nargs="*", help="config overrides such as spa.mode=off")
    c.set_defaults(func=_create)
    i = msub.add_parser(
        "info", help="parameter counts and preprocessing of a preset or a saved model"
    )
    i.add_argument(
        "target", help="preset name, YAML model config, model dir, run folder, or hub repo id"
    )
    i.add_argument("overrides", nargs="*", help="config overrides such as noise.enabled=false")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=_info)

    cfg = sub.add_parser("config", help="show a resolved config or the configuration reference")
    csub = cfg.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    r = csub.add_parser("reference", help="Markdown reference of every config key")
    r.add_argument("--out", help="write to this file instead of stdout")
    r.set_defaults(func=_config_reference)
    s = csub.add_parser("show", help="the full YAML config of a preset or file, with overrides")
    s.add_argument("target", help="preset name or YAML model config")
    s.add_argument("overrides", nargs="*", help="config overrides such as spa.mode=off")
    s.set_defaults(func=_config_show)
