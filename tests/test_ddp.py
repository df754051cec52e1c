"""DDP: a 2-process gloo run on CPU matches a 1-process run on the same data.

The per-process batch is halved so the global batch is the same; the contrastive loss is
computed over the gathered global batch, so both runs take the same optimiser steps. The noise
branch is off here because its BatchNorm statistics are per process on CPU (SyncBatchNorm
needs CUDA). The loss's own gather is also checked alone, on unequal local batches.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from mfclip.config import LossConfig, SPAConfig
from mfclip.model.losses import MFCLIPLoss
from mfclip.model.mfclip import MFCLIPOutput
from mfclip.model.spa import SamplePairAttention

from .test_train import make_dataset

#: Local batch sizes of the two ranks in the unequal-batch test.
SIZES = (3, 2)


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


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features and prompt tokens of the whole batch, with shared prompts (SPA has work)."""
    gen = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    visual = F.normalize(torch.randn(n, 8, generator=gen, dtype=torch.float64), dim=-1)
    text = torch.randn(n, 8, generator=gen, dtype=torch.float64)
    tokens = torch.randint(0, 2, (n, 3, 4), generator=gen)
    return visual, text, tokens


def _scorer(visual: torch.Tensor, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    logits = 10.0 * visual @ F.normalize(text, dim=-1).t()
    return SamplePairAttention(SPAConfig(mode="content"))(logits, tokens)


def _contrastive(visual: torch.Tensor, text: torch.Tensor, tokens: torch.Tensor):
    """L_cmc of a batch and the gradients of its visual and text features."""
    visual, text = visual.clone().requires_grad_(), text.clone().requires_grad_()
    out = MFCLIPOutput(
        logits=torch.zeros(len(visual), 2),
        visual_features=visual,
        text_features=text,
        tokens=tokens,
        scorer=_scorer,
    )
    loss = MFCLIPLoss(LossConfig(kd=0, ce=0)).contrastive(out)
    loss.backward()
    return loss.detach(), visual.grad, text.grad


def _gather_main(out_dir: str) -> None:
    """One rank of the unequal-batch check, started by ``torch.distributed.run``."""
    dist.init_process_group("gloo")
    try:
        rank = dist.get_rank()
        start = sum(SIZES[:rank])
        local = slice(start, start + SIZES[rank])
        loss, grad_v, grad_t = _contrastive(*(t[local] for t in _global_batch()))
        torch.save({"loss": loss, "visual": grad_v, "text": grad_t}, f"{out_dir}/{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_contrastive_gathers_unequal_local_batches(tmp_path):
    """Each rank's loss is the global-batch loss; gradients reach every rank's own slice.

    Every rank scores the whole batch and the gather's backward sums the ranks' gradients onto
    their owners, so a rank's feature gradient is ``world_size`` times the single-process one
    (DDP's gradient averaging divides it back).
    """
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={len(SIZES)}", "-m", "tests.test_ddp", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    loss, grad_v, grad_t = _contrastive(*_global_batch())
    start = 0
    for rank, size in enumerate(SIZES):
        part = torch.load(tmp_path / f"{rank}.pt")
        local = slice(start, start + size)
        start += size
        assert torch.allclose(part["loss"], loss, rtol=1e-12)
        assert torch.allclose(part["visual"], len(SIZES) * grad_v[local], rtol=1e-9)
        assert torch.allclose(part["text"], len(SIZES) * grad_t[local], rtol=1e-9)


if __name__ == "__main__":
    _gather_main(sys.argv[1])
