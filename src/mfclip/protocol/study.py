"""Ablation studies: every named ablation trained and tested under one protocol, one table.

Each (ablation, seed) is a run of its own under ``ablations/<name>/seed-<s>/``, with the
protocol's data, training settings and test sets; only the ablation's ``set`` and the seed
differ. A run records its effective config in ``config.json`` when it starts and its metrics
in ``row.json`` when it finishes; a finished run is never retrained, and a run whose config
has changed since is refused rather than mixed into the table. An interrupted run resumes
from its last checkpoint; a run that fails is recorded with its error (traceback in
``error.txt``) and the study goes on.
Runs go seed by seed, so an early stop still leaves a complete one-seed table. The table
files are rewritten after every run::

    ablations.md, ablations.csv, ablations.json, ablations.png
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import apply_overrides, deep_merge
from ..errors import ConfigError
from ..fileio import atomic_write_text, json_safe
from .ablations import REFERENCE, Ablation, load_ablations, resolve_ablations
from .runner import ProtocolRun
from .spec import slug
from .table import AblationTable, RowResult

__all__ = ["StudyOptions", "run_ablations"]

log = logging.getLogger(__name__)

#: Metrics of the table, per definition.
TABLE_METRICS = {"mfclip": ("auc", "eer"), "deepfakebench": ("auc", "eer", "acc")}


@dataclass
class StudyOptions:
    """What to run: which ablations, how many seeds, and how to report."""

    #: ``all``, group names and/or row names, comma-separated (see ``configs/ablations.yaml``).
    ablations: str = "quick"
    #: Seeds of every row.
    seeds: list[int] = field(default_factory=lambda: [0])
    #: A YAML registry replacing the bundled one.
    registry: str | None = None
    #: Training overrides applied to every row (``epochs=10``), before the ablation's own.
    overrides: list[str] = field(default_factory=list)
    metrics: str = "mfclip"
    bootstrap: int = 1000
    progress: bool = True


def _columns(run: ProtocolRun) -> list[tuple[Any, Any, str]]:
    """``(experiment, test, column name)``; names carry the training set when there are several."""
    exps = run.protocol.experiments
    return [
        (exp, test, test.name if len(exps) == 1 else f"{exp.train.name} -> {test.name}")
        for exp in exps
        for test in exp.tests
    ]


#: Training keys that do not change what a run learns: left out of the recorded config, so
#: resuming on another machine (more workers, another device) reuses finished runs.
NOT_RECORDED = ("data.num_workers", "data.eval_batch_size", "device", "log_every", "tensorboard")


def config_changes(old: Any, new: Any, base: Any = None, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between a row's recorded config and today's.

    Keys only in ``new`` are fields added to mfclip since the row ran: they are changes only
    when the row sets them to something else than ``base`` (the protocol's own config, where
    new fields sit at their defaults). Keys only in ``old`` were removed: changes.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        base = base if isinstance(base, dict) else {}
        out = []
        for key in old:
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                out.append(where)
            else:
                out += config_changes(old[key], new[key], base.get(key), where)
        for key in new.keys() - old.keys():
            if key in base and new[key] != base[key]:
                out.append(f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        bases = base if isinstance(base, list) and len(base) == len(old) else [None] * len(old)
        return [
            c
            for i, (a, b, c0) in enumerate(zip(old, new, bases, strict=True))
            for c in config_changes(a, b, c0, f"{prefix}[{i}]")
        ]
    return [] if old == new else [prefix or "(config)"]


class Study:
    """One ablation study in ``out/ablations``: runs rows, keeps their state, writes the table."""

    def __init__(self, run: ProtocolRun, rows: list[Ablation], options: StudyOptions) -> None:
        self.run = run
        self.rows = rows
        self.options = options
        self.dir = run.out / "ablations"
        self.results: dict[tuple[str, int], RowResult] = {}

    def row_dir(self, ablation: Ablation, seed: int) -> Path:
        return self.dir / slug(ablation.name) / f"seed-{seed}"

    def configs(self, ablation: Ablation | None, seed: int) -> list[Any]:
        """The effective training config of each experiment for this row.

        ``None``: the protocol's own config with this seed (no ablation, no overrides).
        """
        changes: dict[str, Any] = {"seed": seed}
        if ablation is not None:
            common = apply_overrides({}, self.options.overrides)
            changes = deep_merge(deep_merge(common, ablation.overrides()), changes)
        return [self.run.train_config(exp, changes) for exp in self.run.protocol.experiments]

    def record(self, configs: list[Any]) -> dict[str, Any]:
        """What a row's training depends on: its configs and its training sets' contents."""
        resolved = json.loads(json.dumps([c.to_dict() for c in configs], default=str))
        for config in resolved:
            # Where the out folder lies, and how fast it runs, is not part of the experiment.
            config["data"]["manifest"] = os.path.relpath(config["data"]["manifest"], self.run.out)
            for dotted in NOT_RECORDED:
                *parents, leaf = dotted.split(".")
                node = config
                for part in parents:
                    node = node.get(part, {})
                node.pop(leaf, None)
        sets = [self.run.fingerprint(exp)["train"] for exp in self.run.protocol.experiments]
        return {"configs": resolved, "training_sets": sets}

    def evaluation(self) -> dict[str, Any]:
        """What a row's numbers depend on besides training: definitions, intervals, test sets."""
        return {
            "metrics": self.run.metrics,
            "bootstrap": self.run.bootstrap,
            "tests": [self.run.fingerprint(exp)["tests"] for exp in self.run.protocol.experiments],
        }

    def run_row(self, ablation: Ablation, seed: int) -> RowResult:
        """Train and test one (ablation, seed), or reuse its finished result.

        A finished row whose evaluation settings or test sets changed is tested again on its
        trained model; one whose training changed is refused. An unfinished one (failed or
        interrupted) whose training changed is moved aside and started again.
        """
        row_dir = self.row_dir(ablation, seed)
        state_path, stamp = row_dir / "row.json", row_dir / "config.json"
        started = time.perf_counter()
        try:
            configs = self.configs(ablation, seed)
            record = self.record(configs)
            base = self.record(self.configs(None, seed))
        except Exception as exc:
            return self._failed(ablation, seed, exc, started)
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        changed = (
            config_changes(json.loads(stamp.read_text()), record, base) if stamp.is_file() else []
        )
        if changed and state.get("status") == "done":
            error = (
                f"ConfigError: {row_dir} was trained with another config or data "
                f"({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''} changed): "
                f"delete that folder to rerun this row, or use another --out"
            )
            log.error("%s seed %d: %s", ablation.name, seed, error)
            return RowResult(ablation.name, seed, "failed", error=error)
        if changed:  # an unfinished run of the old config: set it aside, never resume it
            aside = row_dir.with_name(f"{row_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
            row_dir.rename(aside)
            log.warning(
                "%s seed %d: config changed (%s) since this run stopped; moved it to %s and "
                "starting again",
                ablation.name,
                seed,
                ", ".join(changed[:4]),
                aside,
            )
            state = {}
        evaluation = self.evaluation()
        if state:
            if state.get("status") == "done" and state.get("evaluation") == evaluation:
                log.info("%s seed %d: done before, reusing %s", ablation.name, seed, row_dir)
                return RowResult(
                    ablation.name, seed, "done", state["results"], seconds=state["seconds"]
                )
            if state.get("status") == "done":
                log.info("%s seed %d: evaluation changed, testing again", ablation.name, seed)
        row_dir.mkdir(parents=True, exist_ok=True)
        if not stamp.is_file():
            atomic_write_text(stamp, json.dumps(record, indent=1) + "\n")
        try:
            results = self._train_and_test(row_dir, configs)
        except Exception as exc:  # a failing row is reported; the others go on
            return self._failed(ablation, seed, exc, started)
        seconds = time.perf_counter() - started
        state = {
            "status": "done",
            "ablation": ablation.name,
            "seed": seed,
            "change": ablation.describe_change(),
            "seconds": seconds,
            "evaluation": evaluation,
            "results": json_safe(results),
        }
        atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")
        return RowResult(ablation.name, seed, "done", state["results"], seconds=seconds)

    def _train_and_test(self, row_dir: Path, configs: list[Any]) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        columns = _columns(self.run)
        for exp, config in zip(self.run.protocol.experiments, configs, strict=True):
            exp_dir = row_dir / slug(exp.train.name) if len(configs) > 1 else row_dir
            self.run.train(exp, config, exp_dir)
            tested = {t.test: t.metrics for t in self.run.test(exp, config, exp_dir)}
            for e, test, column in columns:
                if e is exp:
                    results[column] = tested[test.name]
        return results

    def _failed(self, ablation: Ablation, seed: int, exc: Exception, started: float) -> RowResult:
        """Record a failed row (error in row.json, traceback in error.txt) and go on."""
        row_dir = self.row_dir(ablation, seed)
        error = f"{type(exc).__name__}: {exc}"
        log.error(
            "%s seed %d failed: %s (traceback: %s)",
            ablation.name,
            seed,
            error,
            row_dir / "error.txt",
        )
        row_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(row_dir / "error.txt", traceback.format_exc())
        seconds = time.perf_counter() - started
        state = {"status": "failed", "error": error, "seconds": seconds}
        atomic_write_text(row_dir / "row.json", json.dumps(state, indent=2) + "\n")
        return RowResult(ablation.name, seed, "failed", error=error, seconds=seconds)

    def table(self) -> AblationTable:
        protocol = self.run.protocol
        return AblationTable(
            rows=[a.name for a in self.rows],
            columns=[c for _, _, c in _columns(self.run)],
            metrics=TABLE_METRICS[self.run.metrics],
            results=list(self.results.values()),
            reference=REFERENCE,
            definition=self.run.metrics,
            changes={a.name: a.describe_change() for a in self.rows},
            descriptions={a.name: a.description for a in self.rows},
            title=f"Ablations: protocol {protocol.name}",
            notes=[protocol.description.strip()] if protocol.description.strip() else [],
        )

    def write(self) -> AblationTable:
        table = self.table()
        atomic_write_text(self.run.out / "ablations.md", table.to_markdown())
        atomic_write_text(self.run.out / "ablations.csv", table.to_csv())
        atomic_write_text(self.run.out / "ablations.json", table.to_json())
        if any(r.status == "done" for r in table.results):
            table.plot(self.run.out / "ablations.png")
        return table

    def run_all(self) -> AblationTable:
        self.run.test_manifests()  # a bad test set fails now, not after the first training
        order = [(a, s) for s in self.options.seeds for a in self.rows]
        started, timed = time.perf_counter(), []
        for i, (ablation, seed) in enumerate(order, 1):
            eta = ""
            if timed:
                left = sum(timed) / len(timed) * (len(order) - i + 1)
                eta = f" (about {left / 60:.0f} min left)"
            log.info("ablation %d/%d: %s, seed %d%s", i, len(order), ablation.name, seed, eta)
            before = time.perf_counter()
            result = self.run_row(ablation, seed)
            if result.status == "done" and result.seconds > 0 and time.perf_counter() - before > 1:
                timed.append(time.perf_counter() - before)  # trained now, not reused
            self.results[(ablation.name, seed)] = result
            self.write()
        table = self.write()
        done = sum(r.status == "done" for r in table.results)
        log.info(
            "%d of %d runs done in %.1f min; table: %s",
            done,
            len(order),
            (time.perf_counter() - started) / 60,
            self.run.out / "ablations.md",
        )
        return table


def run_ablations(
    name_or_path: str | Path,
    roots: list[str],
    out_dir: str | Path,
    options: StudyOptions | None = None,
) -> AblationTable:
    """Run the selected ablations with every seed under one protocol and write the table."""
    opts = options or StudyOptions()
    if not opts.seeds or len(set(opts.seeds)) != len(opts.seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {opts.seeds}")
    rows = resolve_ablations(opts.ablations, load_ablations(opts.registry))
    run = ProtocolRun.prepare(
        name_or_path,
        roots,
        out_dir,
        bootstrap=opts.bootstrap,
        metrics=opts.metrics,
        progress=opts.progress,
    )
    return Study(run, rows, opts).run_all()
