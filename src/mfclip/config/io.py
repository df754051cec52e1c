"""Config text formats: YAML files, command-line ``key=value`` overrides, the reference doc.

Reading a file stops at the mapping: expanding a ``preset:`` key needs the preset table,
which builds on this package, so it is done by :func:`mfclip.presets.config_from_yaml`.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .schema import MFCLIPConfig

__all__ = ["apply_overrides", "read_model_section", "reference_markdown", "set_dotted"]


def read_model_section(path: str | Path) -> dict[str, Any]:
    """The model mapping of a YAML file: its ``model:`` section when present, else the file.

    Training configs nest the model under ``model:``; plain model configs do not. A
    ``preset:`` key is left in place for the caller to expand.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    model = data.get("model", data)
    if not isinstance(model, dict):
        raise ConfigError(f"{path}: 'model' must be a mapping, got {model!r}")
    return dict(model)


def _parse_scalar(text: str) -> Any:
    """Parse the value of ``key=value`` with YAML rules (``1e-4``, ``[1, 2]``, ``off``)."""
    if text.lower() in ("on", "off", "yes", "no"):
        return text.lower()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def set_dotted(data: dict[str, Any], key: str, value: Any, where: str = "") -> None:
    """Set ``data[a][b][c] = value`` for ``key = "a.b.c"``, creating sections as needed."""
    where = where or f"key '{key}'"
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"{where} has an empty key")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: '{part}' is not a section")
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested mapping (command-line style)."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        set_dotted(out, key, _parse_scalar(raw.strip()), where=f"override '{item}'")
    return out


def _field_comments(cls: type) -> dict[str, str]:
    """``#:`` comments above each field of a dataclass, read from its source."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and pending:
            comments[match.group(1)] = " ".join(pending)
        pending = []
    return comments


def reference_markdown() -> str:
    """The configuration reference (docs/config.md), generated so it cannot drift."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `mfclip.config` by `mfclip config reference`; do not edit by hand.",
        "Every key can be set in a YAML file (`model:` section) or on the command line as",
        "`section.key=value`.",
        "",
    ]
    root = MFCLIPConfig()
    sections: list[tuple[str, Any]] = [("(top level)", root)]
    sections += [(f.name, getattr(root, f.name)) for f in dataclasses.fields(root)]
    for title, obj in sections:
        if not dataclasses.is_dataclass(obj):
            continue
        cls = type(obj)
        doc = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
        lines += [f"## `{title}`" if title != "(top level)" else "## top level", "", doc, ""]
        lines += ["| key | default | description |", "|---|---|---|"]
        comments = _field_comments(cls)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                continue
            lines.append(f"| `{f.name}` | `{json.dumps(value)}` | {comments.get(f.name, '')} |")
        lines.append("")
    return "\n".join(lines)
