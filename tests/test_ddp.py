"""DDP: a 2-process gloo run on CPU matches a 1-process run on the same data.

The per-process batch is halved so the global batch is the same; the contrastive loss is
computed over the gathered global batch, so both runs take the same optimiser steps. The noise
branch is off here because its BatchNorm statistics are per process on CPU (SyncBatchNorm
needs CUDA).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .test_train import make_dataset


def _train(config: Path, run_dir: Path, nproc: int, batch: int) -> list[dict[str, str]]:
    args = [f"data.batch_size={batch}", "--run-dir", str(run_dir), "--quiet"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "mfclip", "train", str(config), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={nproc}", "-m", "mfclip", "train", str(config), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return list(csv.DictReader((run_dir / "val_log.csv").open()))


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(tmp_path):
    manifest = make_dataset(tmp_path / "data")
    config = tmp_path / "train.yaml"
    config.write_text(
        "model:\n"
        "  preset: mfclip-tiny\n"
        "  noise: {enabled: false}\n"
        f"data: {{manifest: {manifest}, num_workers: 0, eval_batch_size: 3}}\n"
        "epochs: 2\n"
        "patience: 0\n"
        "tensorboard: false\n"
        "optim: {lr: 1.0e-3}\n"
    )
    single = _train(config, tmp_path / "one", 1, 8)
    double = _train(config, tmp_path / "two", 2, 4)
    assert len(single) == len(double) == 2
    for a, b in zip(single, double, strict=True):
        assert int(a["n"]) == int(b["n"]) == 8
        for key in ("auc", "ap", "acc@0.5"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-9), key
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-4)
        assert float(a["threshold"]) == pytest.approx(float(b["threshold"]), abs=1e-4)
