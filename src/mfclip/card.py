"""Model cards: what a published checkpoint is, how it was made and how well it did, filled in.

A card written by hand drifts from the model it describes; this one is built from the files
that describe the model: its folder (``config.json``, weights), the training run folder around
it (``config.yaml``, ``run.json``, ``val_log.csv``, ``best.json``, the manifest it names) and
the folders ``mfclip evaluate`` wrote (``metrics.json``, ``robustness.json``). It fills the
double-braced fields of ``docs/model-card-template.md``; a field without a source says so in
words and is listed under *Not available*, so a card never carries an empty placeholder.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import MFCLIPError
from .fileio import atomic_write_text
from .model.persistence import CONFIG_NAME, read_json, read_meta, read_pointer, resolve_source
from .operating import OperatingPoint

__all__ = ["TEMPLATE", "CardError", "build_card", "locate", "write_card"]

#: The template in a source checkout (how mfclip is installed: ``pip install -e .``).
TEMPLATE = Path(__file__).resolve().parents[2] / "docs" / "model-card-template.md"
FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class CardError(MFCLIPError, ValueError):
    """The card cannot be built: no template, or a template field nothing fills."""


def locate(source: str | Path) -> tuple[Path, Path | None]:
    """``(model folder, run folder or None)`` for a model folder, run folder or hub id.

    A checkpoint saved by training lives at ``RUN/checkpoints/TAG``; its run folder is found
    from there, so a card of a checkpoint still gets its training record.
    """
    model_dir = resolve_source(source)
    given = Path(source)
    if given.is_dir() and any(read_pointer(given, n) for n in ("best", "last")):
        return model_dir, given
    run = model_dir.parent.parent
    if model_dir.parent.name == "checkpoints" and (run / "run.json").is_file():
        return model_dir, run
    return model_dir, None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _with_ci(row: Mapping[str, Any], key: str) -> str:
    text = _fmt(row.get(key))
    ci = row.get(f"{key}_ci")
    if text != "n/a" and isinstance(ci, Sequence) and len(ci) == 2 and None not in ci:
        text += f" [{float(ci[0]):.2f}, {float(ci[1]):.2f}]"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


class _Card:
    """Collects the field values of one card, and what could not be found."""

    def __init__(self, model_dir: Path, run_dir: Path | None, evals: Sequence[Path]) -> None:
        self.model_dir, self.run_dir, self.evals = model_dir, run_dir, [Path(e) for e in evals]
        self.meta = read_meta(model_dir)
        self.info: dict[str, Any] = dict(self.meta.get("training") or {})
        self.missing: list[str] = []
        self.run_cfg: dict[str, Any] = {}
        self.run_info: dict[str, Any] = {}
        if run_dir is not None:
            if (run_dir / "config.yaml").is_file():
                self.run_cfg = _read_yaml(run_dir / "config.yaml")
            if (run_dir / "run.json").is_file():
                self.run_info = dict(read_json(run_dir / "run.json"))

    def lack(self, what: str) -> str:
        """Record a missing source; return the sentence the card shows in its place."""
        self.missing.append(what)
        return f"Not available: {what}."

    # ------------------------------------------------------------------ model
    def model(self) -> dict[str, str]:
        from .loading import load_model

        cfg = self.meta["model"]
        backbone = dict(cfg.get("backbone") or {})
        name = str(backbone.get("name", "unknown"))
        if name in ("tiny", "scratch-b32"):
            weights = "built into mfclip, random initialisation (no pretrained CLIP weights)"
        else:
            revision = backbone.get("revision") or "the default branch"
            weights = f"CLIP weights from `{name}` at {revision}"
        frozen = [t for t in ("text", "vision") if backbone.get(f"freeze_{t}")]
        counts = load_model(self.model_dir, "cpu").param_counts()
        rows = [[k, f"{v:,}", f"{v / 1e6:.3f} M"] for k, v in counts.items() if k != "total"]
        return {
            "name": str(cfg.get("name", self.model_dir.name)),
            "architecture": f"{self.meta.get('architecture', 'MFCLIP')}, variant "
            f"`{cfg.get('variant', 'mfclip')}`, format version {self.meta.get('format_version')}",
            "preset": f"`{cfg.get('name', 'unnamed')}`",
            "version": f"{self.meta.get('mfclip_version', 'unknown')} (saved the weights); "
            f"{self.run_info.get('mfclip_version', 'no run record')} (ran the training)",
            "backbone": f"`{name}`: {weights}; frozen towers: {', '.join(frozen) or 'none'}",
            "parameters": f"{counts['total']:,} in total ({counts['total'] / 1e6:.2f} M)",
            "parameter_table": _table(["component", "parameters", "millions"], rows),
        }

    def preprocessing(self) -> str:
        pre = dict(self.meta["model"].get("preprocess") or {})
        noise = dict(self.meta["model"].get("noise") or {})
        lines = [
            f"- **Image size**: {pre.get('image_size')} px (resize shortest side to "
            f"{pre.get('resize')}, {pre.get('interpolation')} interpolation, centre crop)",
            f"- **Normalisation**: mean {pre.get('mean')}, std {pre.get('std')} (RGB, [0, 1])",
        ]
        if noise.get("enabled", True):
            lines.append(
                f"- **Noise branch**: SRM residuals of the {noise.get('patch_size')} px patch "
                f"chosen by GLCM homogeneity (`{noise.get('select')}`)"
            )
        lines.append(
            "- **Faces**: the model scores the image it is given; crop faces first "
            "(`mfclip data faces`, or `mfclip detect --faces`) when it was trained on crops"
        )
        return "\n".join(lines)

    # ------------------------------------------------------------------ training
    def training_data(self) -> str:
        if self.run_dir is None:
            return self.lack("training data (no run folder: the model folder was given alone)")
        data = dict(self.run_cfg.get("data") or {})
        manifest = Path(str(data.get("manifest") or ""))
        if not data.get("manifest") or not manifest.is_file():
            return self.lack(f"training data counts (manifest `{manifest}` not found)")
        from .data.manifest import read_manifest

        records = read_manifest(manifest)
        counts = Counter((r.split or "-", r.label, r.generator or "-") for r in records)
        order = {"train": 0, "val": 1, "test": 2}
        keys = sorted(counts, key=lambda k: (order.get(k[0], 3), k))
        rows = [[*k, counts[k]] for k in keys]
        splits = f"training split `{data.get('train_split')}`, validation `{data.get('val_split')}`"
        extra = []
        if data.get("val_manifest"):
            extra.append(f"validation manifest `{data['val_manifest']}`")
        if data.get("self_blend"):
            extra.append(
                f"self-blended pseudo-fakes added on the fly (p={data.get('self_blend_p')})"
            )
        groups = len({r.group or r.path for r in records})
        return (
            f"Manifest `{manifest}`: {len(records)} images in {groups} groups; {splits}"
            f"{'; ' + '; '.join(extra) if extra else ''}.\n\n"
            + _table(["split", "label", "generator", "images"], rows)
        )

    def training(self) -> str:
        best = read_pointer(self.run_dir, "best") if self.run_dir else None
        epoch = self.info.get("epoch")
        if self.run_dir is None:
            text = self.lack("training command, seed and commit (no run folder)")
            return f"{text}\n\nThe saved model records epoch {epoch if epoch else 'n/a'}."
        argv = self.run_info.get("argv")
        command = " ".join(str(a) for a in argv) if argv else self.lack("command line")
        cfg = self.run_cfg
        planned, patience = cfg.get("epochs"), cfg.get("patience")
        done = _count_rows(self.run_dir / "val_log.csv")
        stopped = (
            "stopped early" if patience and done is not None and planned and done < planned
            else "ran to the end"
        )  # fmt: skip
        optim, sched = dict(cfg.get("optim") or {}), dict(cfg.get("schedule") or {})
        return "\n".join(
            [
                f"- **Command**: `{command}`",
                f"- **Seed**: {self.run_info.get('seed', cfg.get('seed'))}; **git commit**: "
                f"`{self.run_info.get('git_commit') or 'not a git checkout'}`; started "
                f"{self.run_info.get('started', 'n/a')} on {self.run_info.get('device', 'n/a')} "
                f"(world size {self.run_info.get('world_size', 'n/a')}, torch "
                f"{self.run_info.get('torch', 'n/a')})",
                f"- **Epochs**: {done if done is not None else 'n/a'} of {planned} completed "
                f"({stopped}; patience {patience}); **best epoch**: "
                f"{best.get('epoch') if best else epoch} by validation "
                f"`{cfg.get('select_metric', 'auc')}`",
                f"- **Optimiser**: {optim.get('name')} lr {optim.get('lr')}, weight decay "
                f"{optim.get('weight_decay')}, `{sched.get('name')}` schedule, batch size "
                f"{dict(cfg.get('data') or {}).get('batch_size')}",
            ]
        )

    # ------------------------------------------------------------------ operating point
    def calibration(self) -> str:
        spec = dict(self.info.get("calibration") or {})
        method = spec.get("method", "none")
        if method == "none":
            return self.lack("calibration (the model reports its raw softmax)")
        params = {k: v for k, v in spec.items() if k not in ("method", "n", "n_fake")}
        if method == "isotonic":
            shown = f"{len(params.get('x', []))} knots"
        else:
            shown = ", ".join(f"{k} = {_fmt(v, 4)}" for k, v in params.items())
        fitted = (self.info.get("operating_point") or {}).get("fitted_on", "the validation split")
        text = f"Method `{method}` ({shown}), fitted on {fitted} after model selection."
        report = self.info.get("calibration_report")
        if not report:
            return f"{text}\n\n{self.lack('calibration report (ECE, Brier, NLL)')}"
        rows = [
            [name, _fmt(report[k].get("ece"), 4), _fmt(report[k].get("brier"), 4),
             _fmt(report[k].get("nll"), 4)]
            for name, k in (("before (raw softmax)", "before"), ("after", "after"))
        ]  # fmt: skip
        return f"{text}\n\n" + _table(
            ["on the fitting data", "ECE (15 bins)", "Brier", "NLL"], rows
        )

    def operating_point(self) -> str:
        point = OperatingPoint.from_training_info(self.info)
        band = self.info.get("uncertain")
        band_text = (
            f"uncertain between {band['lo']:.3f} and {band['hi']:.3f}"
            if band
            else "no uncertain band"
        )
        return "\n".join(
            [
                f"- **Threshold**: {point.threshold:.4f}, rule `{point.rule}`",
                f"- **Rates on the fitting data**: FPR {_fmt(point.fpr)}, TPR {_fmt(point.tpr)} "
                f"on {point.fitted_on or 'data not recorded'}",
                f"- **Uncertain band**: {band_text}",
                f"- **In words**: {point.summary()}",
            ]
        )

    # ------------------------------------------------------------------ evaluation
    def evaluation(self) -> str:
        if not self.evals:
            return self.lack("evaluation (no `--eval` folder given)")
        header = ["test set", "subset", "AUC", "AP", "EER", "ACC@thr", "TPR@FPR=5 %", "N"]
        rows, notes = [], []
        for folder in self.evals:
            path = folder / "metrics.json"
            if not path.is_file():
                notes.append(self.lack(f"metrics of `{folder}` (no metrics.json)"))
                continue
            payload = dict(read_json(path))
            for subset, row in dict(payload.get("subsets") or {}).items():
                rows.append(
                    [payload.get("name", folder.name), subset, _with_ci(row, "auc"),
                     _with_ci(row, "ap"), _with_ci(row, "eer"), _with_ci(row, "acc@thr"),
                     _fmt(row.get("tpr@fpr=0.05")), row.get("n", "n/a")]
                )  # fmt: skip
            cal = payload.get("calibration")
            if isinstance(cal, Mapping) and cal.get("before") and cal.get("after"):
                b, a = cal["before"], cal["after"]
                notes.append(
                    f"Calibration on {payload.get('name', folder.name)}: ECE {_fmt(b.get('ece'))} "
                    f"-> {_fmt(a.get('ece'))}, Brier {_fmt(b.get('brier'))} -> "
                    f"{_fmt(a.get('brier'))}, NLL {_fmt(b.get('nll'))} -> {_fmt(a.get('nll'))} "
                    "(raw softmax -> calibrated)."
                )
        table = _table(header, rows) if rows else ""
        return "\n\n".join(t for t in (table, *notes) if t)

    def robustness(self) -> str:
        header = ["test set", "perturbation", "AUC", "AP", "EER", "ACC@thr", "TPR@FPR=5 %", "N"]
        rows = []
        for folder in self.evals:
            if not (folder / "robustness.json").is_file():
                continue
            name = folder.name
            if (folder / "metrics.json").is_file():
                name = dict(read_json(folder / "metrics.json")).get("name", name)
            for pert, row in dict(read_json(folder / "robustness.json")).items():
                if isinstance(row, Mapping):
                    keys = ("auc", "ap", "eer", "acc@thr", "tpr@fpr=0.05")
                    cells = [_fmt(row.get(k)) for k in keys]
                    rows.append([name, pert, *cells, row.get("n", "n/a")])
        if not rows:
            return self.lack("robustness (no robustness.json: run `mfclip evaluate --perturb`)")
        return _table(header, rows)

    def provenance(self) -> str:
        run = f"; run folder `{self.run_dir}`" if self.run_dir else "; no training run folder"
        return f"Model folder `{self.model_dir}`{run}. Generated by `mfclip card`."


def _count_rows(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def build_card(
    source: str | Path, evals: Sequence[str | Path] = (), template: str | Path | None = None
) -> str:
    """The Markdown card of a model folder, run folder or hub id, with ``evals`` folders."""
    template_path = Path(template) if template else TEMPLATE
    if not template_path.is_file():
        raise CardError(
            f"model card template {template_path} not found: pass --template, or run from a "
            "source checkout of mfclip (docs/model-card-template.md)"
        )
    model_dir, run_dir = locate(source)
    if not (model_dir / CONFIG_NAME).is_file():
        raise CardError(f"{model_dir} holds no {CONFIG_NAME}")
    card = _Card(model_dir, run_dir, [Path(e) for e in evals])
    values = {
        **card.model(),
        "preprocessing": card.preprocessing(),
        "training_data": card.training_data(),
        "training": card.training(),
        "calibration": card.calibration(),
        "operating_point": card.operating_point(),
        "evaluation": card.evaluation(),
        "robustness": card.robustness(),
        "provenance": card.provenance(),
    }
    values["missing"] = (
        "\n".join(f"- {m}" for m in card.missing) if card.missing else "Every section was filled."
    )
    text = template_path.read_text(encoding="utf-8")
    unknown = sorted(set(FIELD.findall(text)) - set(values))
    if unknown:
        raise CardError(f"{template_path}: fields nothing fills: {', '.join(unknown)}")
    return FIELD.sub(lambda m: values[m.group(1)], text)


def write_card(
    source: str | Path,
    out: str | Path,
    evals: Sequence[str | Path] = (),
    template: str | Path | None = None,
) -> Path:
    """Build the card and write it atomically to ``out``."""
    return atomic_write_text(Path(out), build_card(source, evals, template))
