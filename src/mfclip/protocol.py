"""Evaluation protocols as data: index, train each experiment, test it everywhere, one table.

A protocol YAML (``configs/protocols/*.yaml``) names its datasets and how to index them, the
model and training settings, and a list of experiments: which rows train (their ``train``
and ``val`` splits) and which rows test (their ``test`` split). Row selections filter manifest
columns; the fakes and the reals of a set are selected separately, since cross-generator
tests keep the real pool fixed. The dataset roots are the one thing a user supplies.

Output folder::

    manifests/<dataset>.csv                 the indexed datasets
    <train>/train.csv                       the rows of the training experiment
    <train>/run/                            the training run (checkpoints, logs)
    <train>/eval/<test>/                    mfclip evaluate's report for each test set
    report.md, report.json                  rows = training set, columns = test sets
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, _deep_merge
from .data.importers import index_dataset
from .data.manifest import read_manifest, write_manifest
from .data.records import Record

__all__ = ["Protocol", "list_protocols", "load_protocol", "run_protocol"]

log = logging.getLogger(__name__)

PROTOCOL_DIR = "configs/protocols"


@dataclass
class Selection:
    """Rows of one dataset: fakes matching ``fake`` and reals matching ``real``."""

    name: str
    dataset: str
    fake: dict[str, list[str]] = field(default_factory=dict)
    real: dict[str, list[str]] = field(default_factory=dict)

    def select(self, records: list[Record], splits: tuple[str, ...]) -> list[Record]:
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
            if r.split not in splits:
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


def _selection(data: dict[str, Any], datasets: dict[str, Any], where: str) -> Selection:
    if not isinstance(data, dict) or "name" not in data:
        raise ConfigError(f"{where}: each set needs a 'name'")
    dataset = data.get("dataset") or (next(iter(datasets)) if len(datasets) == 1 else None)
    if dataset not in datasets:
        raise ConfigError(f"{where}: dataset {dataset!r} is not one of {sorted(datasets)}")
    unknown = set(data) - {"name", "dataset", "fake", "real"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)} (valid: name, dataset, fake, real)"
        )
    rules = {}
    for key in ("fake", "real"):
        rule = data.get(key) or {}
        if not isinstance(rule, dict):
            raise ConfigError(f"{where}.{key}: expected a mapping column -> list of values")
        rules[key] = {
            c: [str(v) for v in (vs if isinstance(vs, list) else [vs])] for c, vs in rule.items()
        }
    return Selection(str(data["name"]), dataset, rules["fake"], rules["real"])


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


def _parse_roots(protocol: Protocol, roots: list[str]) -> dict[str, Path]:
    """``--root PATH`` (one dataset) or ``--root NAME=PATH`` for each dataset."""
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
        out[name] = Path(path)
    missing = sorted(set(protocol.datasets) - set(out))
    if missing:
        raise ConfigError(f"protocol {protocol.name} needs --root for {', '.join(missing)}")
    for name, path in out.items():
        if not path.exists():
            raise ConfigError(f"--root for {name}: {path} does not exist")
    return out


def _index(protocol: Protocol, roots: dict[str, Path], out: Path) -> dict[str, list[Record]]:
    manifests: dict[str, list[Record]] = {}
    for name, spec in protocol.datasets.items():
        path = out / "manifests" / f"{name}.csv"
        if path.is_file():
            manifests[name] = read_manifest(path)
            continue
        options = dict(spec)
        layout = options.pop("layout", "folders")
        result = index_dataset(roots[name], layout, **options)
        for warning in result.warnings:
            log.warning("%s: %s", name, warning)
        write_manifest(result.records, path, relative=False)
        manifests[name] = read_manifest(path)
    return manifests


def _write_rows(records: list[Record], path: Path, what: str) -> Path:
    labels = {r.label for r in records}
    if labels != {"real", "fake"}:
        raise ValueError(f"{what}: needs real and fake rows, found {sorted(labels) or 'none'}")
    return write_manifest(records, path, relative=False)


def run_protocol(
    name_or_path: str | Path,
    roots: list[str],
    out_dir: str | Path,
    overrides: list[str] | None = None,
    bootstrap: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Index, train every experiment, evaluate it on every test set, write the table."""
    from .evaluate.report import protocol_table
    from .evaluate.runner import EvalOptions, evaluate
    from .model.persistence import read_pointer
    from .train.config import load_train_config
    from .train.trainer import Trainer

    protocol = load_protocol(name_or_path)
    out = Path(out_dir)
    manifests = _index(protocol, _parse_roots(protocol, roots), out)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for exp in protocol.experiments:
        train_dir = out / _slug(exp.train.name)
        rows = exp.train.select(manifests[exp.train.dataset], ("train", "val"))
        manifest = _write_rows(rows, train_dir / "train.csv", f"training set {exp.train.name}")
        data = _deep_merge(protocol.training, {"data": {"manifest": str(manifest)}})
        config = load_train_config(data, overrides)
        run_dir = train_dir / "run"
        if read_pointer(run_dir, "best") is None:
            Trainer(
                config, run_dir, resume=read_pointer(run_dir, "last") is not None, progress=progress
            ).fit()
        else:
            log.info("%s: already trained, reusing %s", exp.train.name, run_dir)
        table[exp.train.name] = {}
        for test in exp.tests:
            rows = test.select(manifests[test.dataset], ("test",))
            test_manifest = _write_rows(
                rows, train_dir / "tests" / f"{_slug(test.name)}.csv", test.name
            )
            result = evaluate(
                run_dir,
                test_manifest,
                train_dir / "eval" / _slug(test.name),
                EvalOptions(
                    split="test",
                    bootstrap=bootstrap,
                    progress=progress,
                    num_workers=config.data.num_workers,
                    device=config.device,
                ),
            )
            table[exp.train.name][test.name] = result["by_generator"]["all"]
    lines = [f"# Protocol {protocol.name}", "", protocol.description.strip(), ""]
    for metric in ("auc", "ap", "eer", "acc@thr"):
        values = {
            tr: {te: s.get(metric, float("nan")) for te, s in row.items()}
            for tr, row in table.items()
        }
        lines += [f"## {metric.upper()} (x100)", "", protocol_table(values, metric=metric), ""]
    (out / "report.md").write_text("\n".join(lines))
    payload = {"protocol": protocol.name, "results": table}
    (out / "report.json").write_text(json.dumps(_plain(payload), indent=2) + "\n")
    return payload


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "set"


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    if hasattr(obj, "item"):
        return obj.item()
    return obj
