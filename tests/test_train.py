"""Training on the tiny backbone: exact resume, clean stops, NaN guard, validation-only reads."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mfclip import MFCLIP
from mfclip.config import ConfigError
from mfclip.errors import ManifestError
from mfclip.train import NonFiniteLossError, Trainer, load_train_config


def make_dataset(root: Path, n: int = 40, size: int = 48) -> Path:
    """Reals: pixel noise; fakes: blocky up-sampled noise. train/val/test = 24/8/8."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        fake = i % 2
        if fake:
            img = np.kron(rng.integers(0, 255, (size // 4, size // 4, 3)), np.ones((4, 4, 1)))
        else:
            img = rng.integers(0, 255, (size, size, 3))
        name = f"img{i:03d}.png"
        Image.fromarray(img.astype(np.uint8)).save(root / name)
        split = "train" if i < 24 else ("val" if i < 32 else "test")
        rows.append(
            {
                "path": name,
                "label": "fake" if fake else "real",
                "forgery_type": "entire_synthesis" if fake else "",
                "family": "diffusion" if fake else "",
                "generator": ["DDPM", "LatentDiffusion"][i % 4 // 2] if fake else "",
                "split": split,
                "group": f"id{i}",
            }
        )
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"))


def config(manifest: Path, *overrides: str):
    base = {
        "model": {"preset": "mfclip-tiny"},
        "data": {"manifest": str(manifest), "batch_size": 6, "num_workers": 0},
        "epochs": 2,
        "tensorboard": False,
    }
    return load_train_config(base, list(overrides))


def weights(run_dir: Path, pointer: str = "last") -> dict[str, torch.Tensor]:
    ckpt = json.loads((run_dir / f"{pointer}.json").read_text())["checkpoint"]
    return load_file(str(run_dir / ckpt / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("stop_at", [2, 4])  # mid-epoch and at the epoch boundary (4 steps/epoch)
def test_resume_equals_uninterrupted(manifest, tmp_path, stop_at):
    cfg = config(manifest)
    full = Trainer(cfg, tmp_path / "full", progress=False).fit()
    assert full.epochs_completed == 2 and not full.interrupted

    def stop(trainer, step):
        if step == stop_at:
            trainer.request_stop()

    part = Trainer(cfg, tmp_path / "part", on_step=stop, progress=False).fit()
    assert part.interrupted
    resumed = Trainer(cfg, tmp_path / "part", resume=True, progress=False).fit()
    assert resumed.epochs_completed == 2
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "part"))
    assert [h["auc"] for h in full.history] == [h["auc"] for h in resumed.history]


def test_sigterm_saves_and_stops(manifest, tmp_path):
    def send(trainer, step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    result = Trainer(config(manifest), tmp_path / "run", on_step=send, progress=False).fit()
    assert result.interrupted
    pointer = json.loads((tmp_path / "run" / "last.json").read_text())
    assert pointer["batch"] == 1
    assert (tmp_path / "run" / pointer["checkpoint"] / "resume.pt").is_file()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(manifest, tmp_path):
    cfg = config(manifest, "epochs=3")

    def poison(trainer, step):
        if step == 5:  # second epoch: epoch-001 is already saved
            for p in trainer.model.head.parameters():
                p.data.fill_(float("nan"))

    trainer = Trainer(cfg, tmp_path / "run", on_step=poison, progress=False)
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss at epoch 2.*last good checkpoint"
    ):
        trainer.fit()
    good = weights(tmp_path / "run")
    assert json.loads((tmp_path / "run" / "last.json").read_text())["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in good.values())


def test_selection_on_validation_only_and_threshold_stored(manifest, tmp_path, monkeypatch):
    import mfclip.data.dataset as dataset_module

    read: list[str] = []
    original = dataset_module.load_image

    def spy(path, *args, **kwargs):
        read.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "load_image", spy)
    result = Trainer(config(manifest), tmp_path / "run", progress=False).fit()
    test_files = {f"img{i:03d}.png" for i in range(32, 40)}
    assert read and not test_files & set(read)

    best = MFCLIP.from_pretrained(result.best_checkpoint)
    val_rows = list(csv.DictReader((tmp_path / "run" / "val_log.csv").open()))
    best_epoch = max(val_rows, key=lambda r: float(r["auc"]))
    assert best.training_info["validation"]["auc"] == pytest.approx(float(best_epoch["auc"]))
    # After selection, calibration and the threshold are fitted on the same validation split:
    # the stored threshold is the EER point of the calibrated validation probabilities.
    from mfclip.evaluate.operating import threshold_for_rule
    from mfclip.train.data import build_datasets
    from mfclip.train.distributed import DistEnv
    from mfclip.train.selection import validation_scores

    cfg = config(manifest)
    assert best.training_info["calibration"]["method"] == "temperature"
    assert best.calibration.method == "temperature"
    val = validation_scores(best, build_datasets(cfg, best)[1], cfg, DistEnv())
    assert best.threshold == pytest.approx(threshold_for_rule("eer", val.labels, val.scores))
    report = best.training_info["calibration_report"]
    # Fitted against Platt's smoothed targets, the hard-label NLL may rise a hair on a model
    # that was close to calibrated already; it must not get materially worse.
    assert report["after"]["nll"] <= report["before"]["nll"] + 0.01

    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["seed"] == 0 and run["mfclip_version"]
    assert (tmp_path / "run" / "config.yaml").is_file()
    log_rows = list(csv.DictReader((tmp_path / "run" / "train_log.csv").open()))
    assert {"total", "cmc", "kd", "ce", "lr"} <= set(log_rows[0])


def test_missing_validation_split_is_a_clear_error(manifest, tmp_path):
    cfg = config(manifest, "data.val_split=dev")
    with pytest.raises(ValueError, match=r"no 'dev' rows: model selection needs validation data"):
        Trainer(cfg, tmp_path / "run", progress=False).fit()


def test_resume_without_a_run_is_an_error(manifest, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no last\.json"):
        Trainer(config(manifest), tmp_path / "empty", resume=True, progress=False).fit()


def test_config_errors_name_the_field(manifest):
    with pytest.raises(ConfigError, match=r"data\.batch_size must be >= 1"):
        config(manifest, "data.batch_size=0")
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.learning_rate'"):
        config(manifest, "optim.learning_rate=1")
    with pytest.raises(ConfigError, match=r"data\.augment\.jpeg_p must lie in \[0, 1\]"):
        config(manifest, "data.augment.jpeg_p=1.5")
    with pytest.raises(ConfigError, match=r"rescale_range must be 0 < low <= high"):
        config(manifest, "data.augment.rescale_range=[1.5, 0.5]")


def test_unreadable_training_set_is_a_clear_error(manifest, tmp_path):
    moved = tmp_path / "m.csv"
    moved.write_text(manifest.read_text())  # relative paths now point nowhere
    with pytest.raises(ManifestError, match=r"no training sample .* could be read"):
        Trainer(config(moved), tmp_path / "run", progress=False).fit()


def test_run_folder_files_get_the_umask_modes(manifest, tmp_path):
    """Another account can read a trained model: no file keeps mkstemp's private mode 0600."""
    old = os.umask(0o022)
    try:
        cfg = config(manifest, "epochs=1", "max_steps_per_epoch=1")
        result = Trainer(cfg, tmp_path / "run", progress=False).fit()
    finally:
        os.umask(old)
    run, ckpt = tmp_path / "run", result.best_checkpoint
    files = [run / name for name in ("config.yaml", "run.json", "best.json", "last.json")]
    files += [ckpt / name for name in ("config.json", "model.safetensors", "resume.pt")]
    modes = {str(p.relative_to(run)): oct(p.stat().st_mode & 0o777) for p in files}
    assert modes == dict.fromkeys(modes, "0o644")
    assert oct(ckpt.stat().st_mode & 0o777) == "0o755"
