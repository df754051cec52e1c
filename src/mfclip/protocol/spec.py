"""Protocol files as data: which datasets, which rows train, which rows test.

A protocol YAML (``configs/protocols/*.yaml``) names its datasets and how to index them, the
model and training settings, and a list of experiments: which rows train (their ``train``
and ``val`` splits) and which rows test (their ``test`` split by default). Row selections
filter manifest columns; the fakes and the reals of a set are selected separately, since
cross-generator tests keep the real pool fixed. A test set may draw its fakes from every
split (``splits: {fake: [train, val, test]}``) when training never sees that generator; the
runner refuses any test set that shares an image with its training rows. The dataset roots
are the one thing a user supplies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError
from ..data.records import Record

__all__ = [
    "PROTOCOL_DIR",
    "Experiment",
    "Protocol",
    "Selection",
    "list_protocols",
    "load_protocol",
    "parse_protocol",
    "parse_roots",
    "slug",
]

PROTOCOL_DIR = "configs/protocols"
SPLITS = ("train", "val", "test")


@dataclass
class Selection:
    """Rows of one dataset: fakes matching ``fake`` and reals matching ``real``.

    ``splits`` names, per label, the manifest splits a row may come from; ``None`` means the
    caller's default (train + val for training sets, test for test sets).
    """

    name: str
    dataset: str
    fake: dict[str, list[str]] = field(default_factory=dict)
    real: dict[str, list[str]] = field(default_factory=dict)
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def select(self, records: list[Record], splits: tuple[str, ...]) -> list[Record]:
        """The records this set selects; ``splits`` applies to labels ``self.splits`` omits."""

        def matches(record: Record, rule: dict[str, list[str]]) -> bool:
            for column, allowed in rule.items():
                value = getattr(record, column, None)
                if value is None:
                    value = record.extra.get(column, "")
                if _norm(value) not in {_norm(a) for a in allowed}:
                    return False
            return True

        out = []
        for r in records:
            if r.split not in self.splits.get(r.label, splits):
                continue
            if matches(r, self.fake if r.is_fake else self.real):
                out.append(r)
        return out


@dataclass
class Experiment:
    train: Selection
    tests: list[Selection]


@dataclass
class Protocol:
    """A parsed protocol file."""

    name: str
    description: str
    datasets: dict[str, dict[str, Any]]
    training: dict[str, Any]
    experiments: list[Experiment]
    source: str = ""


def _norm(value: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


def slug(name: str) -> str:
    """A file-system-safe folder name for a set or ablation name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "set"


def _splits(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if isinstance(value, list):
        value = {"real": value, "fake": value}
    if not isinstance(value, dict) or set(value) - {"real", "fake"}:
        raise ConfigError(f"{where}.splits: expected {{fake: [splits], real: [splits]}}")
    out = {}
    for label, names in value.items():
        names = names if isinstance(names, list) else [names]
        bad = [n for n in names if n not in SPLITS]
        if bad or not names:
            raise ConfigError(f"{where}.splits.{label}: {names} (valid: {', '.join(SPLITS)})")
        out[label] = tuple(str(n) for n in names)
    return out


def _selection(data: dict[str, Any], datasets: dict[str, Any], where: str) -> Selection:
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"{where}: each set needs a 'name'")
    dataset = data.get("dataset") or (next(iter(datasets)) if len(datasets) == 1 else None)
    if dataset not in datasets:
        raise ConfigError(f"{where}: dataset {dataset!r} is not one of {sorted(datasets)}")
    unknown = set(data) - {"name", "dataset", "fake", "real", "splits"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)} (valid: name, dataset, fake, real, splits)"
        )
    rules = {}
    for key in ("fake", "real"):
        rule = data.get(key) or {}
        if not isinstance(rule, dict):
            raise ConfigError(f"{where}.{key}: expected a mapping column -> list of values")
        rules[key] = {
            c: [str(v) for v in (vs if isinstance(vs, list) else [vs])] for c, vs in rule.items()
        }
    return Selection(
        str(data["name"]), dataset, rules["fake"], rules["real"], _splits(data.get("splits"), where)
    )


def parse_protocol(data: dict[str, Any], source: str = "") -> Protocol:
    """Validate a protocol mapping (as read from YAML)."""
    for key in ("name", "datasets", "experiments"):
        if key not in data:
            raise ConfigError(f"{source or 'protocol'}: missing '{key}'")
    datasets = data["datasets"]
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"{source}: 'datasets' must map names to {{layout: ...}}")
    experiments = []
    for i, exp in enumerate(data["experiments"]):
        where = f"{source}: experiments[{i}]"
        tests = exp.get("test") or []
        if not tests:
            raise ConfigError(f"{where}: needs at least one 'test' set")
        experiments.append(
            Experiment(
                train=_selection(exp.get("train"), datasets, f"{where}.train"),
                tests=[_selection(t, datasets, f"{where}.test[{j}]") for j, t in enumerate(tests)],
            )
        )
    return Protocol(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        datasets=datasets,
        training=dict(data.get("training") or {}),
        experiments=experiments,
        source=source,
    )


def _bundled() -> dict[str, Any]:
    root = resources.files("mfclip").joinpath(PROTOCOL_DIR)
    return {p.name.removesuffix(".yaml"): p for p in root.iterdir() if p.name.endswith(".yaml")}


def list_protocols() -> list[str]:
    """Names of the protocols shipped with mfclip."""
    return sorted(_bundled())


def load_protocol(name_or_path: str | Path) -> Protocol:
    """A bundled protocol by name, or a protocol YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text, source = path.read_text(), str(path)
    else:
        bundled = _bundled()
        if str(name_or_path) not in bundled:
            raise ConfigError(
                f"unknown protocol '{name_or_path}'; bundled: {', '.join(sorted(bundled))} "
                f"(or pass a YAML file)"
            )
        text, source = bundled[str(name_or_path)].read_text(), str(name_or_path)
    return parse_protocol(yaml.safe_load(text) or {}, source)


def parse_roots(protocol: Protocol, roots: list[str]) -> dict[str, Path]:
    """``--root PATH`` (one dataset) or ``--root NAME=PATH`` for each dataset, made absolute."""
    out: dict[str, Path] = {}
    for item in roots:
        name, sep, path = item.partition("=")
        if not sep:
            if len(protocol.datasets) != 1:
                raise ConfigError(
                    f"protocol {protocol.name} uses datasets {sorted(protocol.datasets)}: "
                    f"give each as --root NAME=PATH"
                )
            name, path = next(iter(protocol.datasets)), item
        if name not in protocol.datasets:
            raise ConfigError(f"--root {item}: no dataset {name!r} in {sorted(protocol.datasets)}")
        out[name] = Path(path).expanduser().resolve()
    missing = sorted(set(protocol.datasets) - set(out))
    if missing:
        raise ConfigError(f"protocol {protocol.name} needs --root for {', '.join(missing)}")
    for name, path in out.items():
        if not path.exists():
            raise ConfigError(f"--root for {name}: {path} does not exist")
    return out
