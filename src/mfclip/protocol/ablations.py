"""The ablation registry: named changes to a protocol's training config, as data.

Rows live in ``configs/ablations.yaml`` (or a user's file of the same shape): a description,
the groups a row belongs to, and ``set``, dotted config keys applied on top of the protocol's
training section. A row changes only what it names, so its difference from ``full`` is the
ablation. ``--ablations`` takes ``all``, group names and row names, comma-separated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..config import set_dotted
from ..errors import ConfigError
from .spec import slug

__all__ = ["Ablation", "load_ablations", "resolve_ablations"]

REGISTRY = "configs/ablations.yaml"
REFERENCE = "full"


@dataclass
class Ablation:
    """One row of an ablation table."""

    name: str
    description: str
    set: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    #: The row of the MFCLIP paper's ablation this corresponds to, if any.
    paper: str = ""

    def overrides(self) -> dict[str, Any]:
        """``set`` as a nested mapping, ready to merge into a training config."""
        out: dict[str, Any] = {}
        for key, value in self.set.items():
            set_dotted(out, key, value, where=f"ablation {self.name!r}, key '{key}'")
        return out

    def describe_change(self) -> str:
        """``key=value, ...`` in one line (``(none)`` for the reference row)."""
        return ", ".join(f"{k}={json.dumps(v)}" for k, v in self.set.items()) or "(none)"


def _parse(data: Any, source: str) -> dict[str, Ablation]:
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source}: expected a mapping of ablation names to rows")
    rows = {}
    for name, row in data.items():
        where = f"{source}: {name}"
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a mapping with description, set, groups")
        unknown = set(row) - {"description", "set", "groups", "paper"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        changes = row.get("set") or {}
        if not isinstance(changes, dict):
            raise ConfigError(f"{where}.set: expected dotted keys -> values")
        groups = row.get("groups") or []
        if not isinstance(groups, list):
            raise ConfigError(f"{where}.groups: expected a list")
        folder = slug(str(name))
        clash = next((other for other in rows if slug(other) == folder), None)
        if clash is not None:
            raise ConfigError(f"{where}: rows {clash!r} and {name!r} would share folder {folder!r}")
        rows[str(name)] = Ablation(
            str(name),
            str(row.get("description", "")),
            {str(k): v for k, v in changes.items()},
            [str(g) for g in groups],
            str(row.get("paper", "")),
        )
    return rows


def load_ablations(path: str | Path | None = None) -> dict[str, Ablation]:
    """The bundled registry, or a user's YAML file of the same shape."""
    if path is None:
        text, source = resources.files("mfclip").joinpath(REGISTRY).read_text(), REGISTRY
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"ablations file not found: {path}")
        text, source = path.read_text(), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    return _parse(data, source)


def resolve_ablations(spec: str, registry: dict[str, Ablation]) -> list[Ablation]:
    """``all`` | group and row names, comma-separated -> rows, reference first, in file order.

    The reference row (``full``) is always included, since every other row is compared with
    it; a registry without one is an error.
    """
    groups = {g for row in registry.values() for g in row.groups}
    wanted: set[str] = set()
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == "all":
            wanted |= set(registry)
        elif item in registry:
            wanted.add(item)
        elif item in groups:
            wanted |= {n for n, row in registry.items() if item in row.groups}
        else:
            raise ConfigError(
                f"unknown ablation or group {item!r}; rows: {', '.join(registry)}; "
                f"groups: {', '.join(sorted(groups))} (see `mfclip protocol ablations`)"
            )
    if not wanted:
        raise ConfigError("--ablations is empty; give 'all', group names or row names")
    if REFERENCE not in registry:
        raise ConfigError(
            f"the ablations file has no '{REFERENCE}' row: add `{REFERENCE}: {{set: {{}}}}`, "
            f"the reference every other row is compared with"
        )
    wanted.add(REFERENCE)
    rows = [row for name, row in registry.items() if name in wanted]
    return sorted(rows, key=lambda row: row.name != REFERENCE)  # the reference first
