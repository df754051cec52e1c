"""Run a protocol: index its datasets once, then train and test one configuration of it.

:class:`ProtocolRun` is shared by the plain protocol table (:func:`run_protocol`: rows =
training sets) and by ablation studies (:mod:`.study`: rows = ablations), so both index,
select, train and evaluate the same way.

Output folder::

    manifests/<dataset>.csv                 the indexed datasets
    sets/<train>/train.csv                  the rows of the training experiment
    sets/<train>/tests/<test>.csv           the rows of each of its test sets
    <train>/run/                            the training run (checkpoints, logs)
    <train>/eval/<test>/                    mfclip evaluate's report for each test set
    report.md, report.json                  rows = training set, columns = test sets
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import deep_merge
from ..data.importers import index_dataset
from ..data.manifest import read_manifest, write_manifest
from ..data.records import Record
from ..errors import ConfigError
from ..evaluate.deepfakebench import METRIC_DEFINITIONS, SUMMARY
from ..fileio import atomic_write_text, json_safe
from .spec import Experiment, Protocol, Selection, load_protocol, parse_roots, slug

__all__ = ["ProtocolRun", "TestResult", "run_protocol"]

log = logging.getLogger(__name__)


@dataclass
class TestResult:
    """One test set's summary: the metrics of the chosen definition, with intervals."""

    test: str
    metrics: dict[str, Any]
    report: str


@dataclass
class ProtocolRun:
    """An indexed protocol in an output folder, ready to train and test configurations."""

    protocol: Protocol
    out: Path
    manifests: dict[str, list[Record]]
    roots: dict[str, Path] = dataclasses.field(default_factory=dict)
    bootstrap: int = 1000
    metrics: str = "mfclip"
    progress: bool = True
    #: Set files written by this run, and experiments' fingerprints: both fixed once indexed.
    _written: set[Path] = dataclasses.field(default_factory=set, init=False, repr=False)
    _fingerprints: dict[str, dict[str, Any]] = dataclasses.field(
        default_factory=dict, init=False, repr=False
    )

    @classmethod
    def prepare(
        cls,
        name_or_path: str | Path | Protocol,
        roots: list[str],
        out_dir: str | Path,
        *,
        bootstrap: int = 1000,
        metrics: str = "mfclip",
        progress: bool = True,
    ) -> ProtocolRun:
        """Load the protocol and index its datasets (reusing manifests already written)."""
        if metrics not in METRIC_DEFINITIONS:
            raise ConfigError(
                f"metrics must be one of {', '.join(METRIC_DEFINITIONS)}, got {metrics!r}"
            )
        protocol = (
            name_or_path if isinstance(name_or_path, Protocol) else load_protocol(name_or_path)
        )
        out = Path(out_dir)
        parsed = parse_roots(protocol, roots)
        manifests = _index(protocol, parsed, out)
        return cls(protocol, out, manifests, parsed, bootstrap, metrics, progress)

    # ------------------------------------------------------------------ sets
    def training_rows(self, exp: Experiment) -> list[Record]:
        return exp.train.select(self.manifests[exp.train.dataset], ("train", "val"))

    def test_rows(self, test: Selection) -> list[Record]:
        return test.select(self.manifests[test.dataset], ("test",))

    def training_manifest(self, exp: Experiment) -> Path:
        """``sets/<train>/train.csv``: the train and val rows of ``exp`` (written once a run)."""
        path = self.out / "sets" / slug(exp.train.name) / "train.csv"
        if path not in self._written:
            _write_rows(self.training_rows(exp), path, f"training set {exp.train.name}")
            self._written.add(path)
        return path

    def test_manifest(self, exp: Experiment, test: Selection) -> Path:
        """``sets/<train>/tests/<test>.csv``, every row marked ``test``; refuses overlaps."""
        path = self.out / "sets" / slug(exp.train.name) / "tests" / f"{slug(test.name)}.csv"
        if path in self._written:
            return path
        rows = self.test_rows(test)
        seen = {r.path for r in self.training_rows(exp)}
        shared = [r.path for r in rows if r.path in seen]
        if shared:
            raise ConfigError(
                f"test set {test.name!r} shares {len(shared)} image(s) with training set "
                f"{exp.train.name!r} (e.g. {shared[0]}): fix its 'splits' in the protocol"
            )
        rows = [dataclasses.replace(r, split="test") for r in rows]
        _write_rows(rows, path, f"test set {test.name}")
        self._written.add(path)
        return path

    def test_manifests(self) -> None:
        """Write (and so check) every test set before anything trains."""
        for exp in self.protocol.experiments:
            for test in exp.tests:
                self.test_manifest(exp, test)

    def digest(self, records: list[Record], dataset: str) -> str:
        """A short hash of which images a set holds (paths relative to the dataset root)."""
        root = self.roots.get(dataset)
        rows = sorted(
            (os.path.relpath(r.path, root) if root else r.path, r.label, r.split) for r in records
        )
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    def fingerprint(self, exp: Experiment) -> dict[str, Any]:
        """What an experiment's results depend on besides its training config: its sets.

        The datasets are indexed once a run, so this is computed once per experiment.
        """
        key = exp.train.name
        if key not in self._fingerprints:
            self._fingerprints[key] = {
                "train": self.digest(self.training_rows(exp), exp.train.dataset),
                "tests": {t.name: self.digest(self.test_rows(t), t.dataset) for t in exp.tests},
            }
        return self._fingerprints[key]

    # ------------------------------------------------------------------ one configuration
    def train_config(self, exp: Experiment, overrides: dict[str, Any] | None = None) -> Any:
        """The validated training config of ``exp`` with ``overrides`` (a nested mapping)."""
        from ..train.config import load_train_config

        data = deep_merge(self.protocol.training, overrides or {})
        data = deep_merge(data, {"data": {"manifest": str(self.training_manifest(exp))}})
        return load_train_config(data)

    def train(self, exp: Experiment, config: Any, row_dir: Path) -> Path:
        """Train ``config`` into ``row_dir/run`` unless done; resume an interrupted run.

        ``row_dir/trained.json`` says ``running`` from the start and ``done`` once training
        and calibration finished. A stop request (Ctrl-C, SIGTERM) leaves a resumable
        checkpoint and raises ``KeyboardInterrupt``, so that a study stops instead of moving
        on. Folders written before the marker existed count as done when they hold a best
        checkpoint and did not stop mid-epoch (the rule of earlier releases).
        """
        from ..model.persistence import read_pointer
        from ..train.trainer import Trainer

        run_dir, marker = row_dir / "run", row_dir / "trained.json"
        last = read_pointer(run_dir, "last")
        status = json.loads(marker.read_text()).get("status") if marker.is_file() else None
        legacy = status is None and read_pointer(run_dir, "best") and "batch" not in (last or {})
        if status == "done" or legacy:
            log.info("%s: already trained, reusing %s", exp.train.name, run_dir)
            return run_dir
        atomic_write_text(marker, json.dumps({"status": "running"}) + "\n")
        result = Trainer(config, run_dir, resume=last is not None, progress=self.progress).fit()
        if result.interrupted:
            raise KeyboardInterrupt(
                f"training stopped; run the same command again to resume {run_dir}"
            )
        info = {
            "status": "done",
            "epochs_completed": result.epochs_completed,
            "best_metric": result.best_metric,
        }
        atomic_write_text(marker, json.dumps(json_safe(info)) + "\n")
        return run_dir

    def test(self, exp: Experiment, config: Any, row_dir: Path) -> list[TestResult]:
        """Evaluate the trained run of ``row_dir`` on every test set of ``exp``."""
        from ..evaluate.runner import EvalOptions, evaluate

        results = []
        for test in exp.tests:
            report = row_dir / "eval" / slug(test.name)
            result = evaluate(
                row_dir / "run",
                self.test_manifest(exp, test),
                report,
                EvalOptions(
                    split="test",
                    bootstrap=self.bootstrap,
                    progress=self.progress,
                    num_workers=config.data.num_workers,
                    device=config.device,
                    metrics=self.metrics,
                ),
            )
            table = result["deepfakebench"] if self.metrics == "deepfakebench" else None
            summary = (table or result["by_generator"])["all"]
            results.append(TestResult(test.name, json_safe(summary), str(report)))
        return results


def _index(protocol: Protocol, roots: dict[str, Path], out: Path) -> dict[str, list[Record]]:
    """Index each dataset once; again when its root or its indexing options changed."""
    manifests: dict[str, list[Record]] = {}
    for name, spec in protocol.datasets.items():
        path = out / "manifests" / f"{name}.csv"
        source = out / "manifests" / f"{name}.json"
        wanted = {"root": str(roots[name]), "options": json_safe(spec)}
        recorded = json.loads(source.read_text()) if source.is_file() else None
        if path.is_file() and recorded in (wanted, None):
            manifests[name] = read_manifest(path)
            continue
        if path.is_file():
            log.info("%s: root or indexing options changed, indexing again", name)
        options = dict(spec)
        layout = options.pop("layout", "folders")
        result = index_dataset(roots[name], layout, **options)
        for warning in result.warnings:
            log.warning("%s: %s", name, warning)
        write_manifest(result.records, path, relative=False)
        atomic_write_text(source, json.dumps(wanted, indent=2) + "\n")
        manifests[name] = read_manifest(path)
    return manifests


def _write_rows(records: list[Record], path: Path, what: str) -> Path:
    labels = {r.label for r in records}
    if labels != {"real", "fake"}:
        raise ConfigError(f"{what}: needs real and fake rows, found {sorted(labels) or 'none'}")
    return write_manifest(records, path, relative=False)


def run_protocol(
    name_or_path: str | Path,
    roots: list[str],
    out_dir: str | Path,
    overrides: list[str] | None = None,
    bootstrap: int = 1000,
    progress: bool = True,
    metrics: str = "mfclip",
) -> dict[str, Any]:
    """Index, train every experiment, evaluate it on every test set, write the table."""
    from ..config import apply_overrides
    from ..evaluate.report import protocol_table

    run = ProtocolRun.prepare(
        name_or_path, roots, out_dir, bootstrap=bootstrap, metrics=metrics, progress=progress
    )
    protocol, out = run.protocol, run.out
    run.test_manifests()  # a bad test set fails now, not after the first training
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for exp in protocol.experiments:
        row_dir = out / slug(exp.train.name)
        config = run.train_config(exp, apply_overrides({}, overrides or []))
        run.train(exp, config, row_dir)
        table[exp.train.name] = {t.test: t.metrics for t in run.test(exp, config, row_dir)}
    lines = [f"# Protocol {protocol.name}", "", protocol.description.strip(), ""]
    lines += [f"Metric definitions: {metrics} ({SUMMARY[metrics]}).", ""]
    names = ("auc", "ap", "eer", "acc") if metrics == "deepfakebench" else None
    for metric in names or ("auc", "ap", "eer", "acc@thr"):
        values = {
            tr: {te: s.get(metric, float("nan")) for te, s in row.items()}
            for tr, row in table.items()
        }
        lines += [f"## {metric.upper()} (x100)", "", protocol_table(values, metric=metric), ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    payload = {"protocol": protocol.name, "metric_definitions": metrics, "results": table}
    atomic_write_text(out / "report.json", json.dumps(json_safe(payload), indent=2) + "\n")
    return payload
