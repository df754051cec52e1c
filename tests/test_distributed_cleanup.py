"""Leaving the process group: together after a normal end, at once after an error.

Real ``torchrun`` runs of 2 gloo processes. Rank 1 takes its time over its last step; after a
normal end rank 0 must not leave (and tear the group down) before rank 1 is done, and after
an error on rank 0 it must not wait for rank 1 at a barrier.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, sys, time
from pathlib import Path
from mfclip.cli.common import in_process_group

out, mode = Path(sys.argv[1]), sys.argv[2]

def run(args, env):
    if env.rank == 1:
        time.sleep(float(sys.argv[3]))
        (out / "rank1-done").write_text("done")
    elif mode == "error":
        raise RuntimeError("rank 0 failed")
    return 0

class Args:
    device = "cpu"

in_process_group(run, Args())
if mode == "ok" and os.environ["RANK"] == "0":
    (out / "rank0-left").write_text(str((out / "rank1-done").exists()))
"""


def _torchrun(tmp_path: Path, mode: str, sleep: float) -> subprocess.CompletedProcess:
    script = tmp_path / "leave.py"
    script.write_text(SCRIPT)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(script), str(tmp_path), mode, str(sleep),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow
def test_ranks_leave_together_after_a_normal_end(tmp_path: Path) -> None:
    done = _torchrun(tmp_path, "ok", sleep=2.0)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "rank0-left").read_text() == "True"  # rank 1 had finished first


@pytest.mark.slow
def test_an_error_leaves_without_waiting_for_the_others(tmp_path: Path) -> None:
    done = _torchrun(tmp_path, "error", sleep=20.0)
    assert done.returncode != 0
    assert "rank 0 failed" in done.stderr
    # torchrun stopped rank 1 during its sleep: rank 0 had not waited for it at a barrier.
    assert not (tmp_path / "rank1-done").exists()
