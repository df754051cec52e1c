"""``mfclip.load_model``: every source kind, and one clear error for every way a model breaks."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import mfclip
from mfclip import CheckpointError, load_model
from mfclip.model.persistence import read_pointer

FIXTURE = Path(__file__).parent / "fixtures" / "model-v0.1.0"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    model.training_info = {"threshold": 0.3}
    return model.save_pretrained(tmp_path_factory.mktemp("m") / "model")


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for item in src.iterdir():
        (dst / item.name).write_bytes(item.read_bytes())
    return dst


def _images(seed: int = 7) -> torch.Tensor:
    """The fixture's check images (also made this way when the fixture was saved)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:224, 0:224]
    out = []
    for i in range(4):
        base = np.stack([xx, yy, (xx + yy) // 2]) % 256
        y0, x0 = (i // 2) * 112, (i % 2) * 112
        base[:, y0 : y0 + 112, x0 : x0 + 112] = rng.integers(0, 256, (3, 112, 112))
        out.append(base.astype(np.uint8))
    return torch.from_numpy(np.stack(out))


def test_a_model_saved_by_release_0_1_0_loads_and_scores_as_it_did():
    model = load_model(FIXTURE)
    expected = json.loads((FIXTURE.parent / "model-v0.1.0-scores.json").read_text())
    pred = model.predict(_images(expected["seed"]))
    np.testing.assert_allclose(pred.fake_prob.numpy(), expected["fake_prob"], rtol=0, atol=1e-5)
    assert pred.boxes.tolist() == expected["boxes"]
    assert model.threshold == pytest.approx(0.42)


def test_model_folder_run_folder_and_model_object(saved, tmp_path):
    direct = load_model(saved)
    assert not direct.training and direct.threshold == pytest.approx(0.3)
    run = tmp_path / "run"
    _copy(saved, run / "checkpoints" / "epoch-002")
    (run / "best.json").write_text(json.dumps({"checkpoint": "checkpoints/epoch-002"}))
    via_run = load_model(run)
    x = _images()
    assert torch.equal(via_run.predict(x).fake_prob, direct.predict(x).fake_prob)
    assert read_pointer(run, "best")["path"] == run / "checkpoints" / "epoch-002"
    assert load_model(direct) is direct
    # Detector.from_pretrained is the same loader.
    assert mfclip.Detector.from_pretrained(run, device="cpu").threshold == pytest.approx(0.3)


def test_missing_and_hub_sources(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope")
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(CheckpointError, match=r"Hugging Face Hub \(HF_HUB_OFFLINE is set\)"):
        load_model("someone/not-a-cached-model")


def test_truncated_weights_name_the_file(saved, tmp_path):
    broken = _copy(saved, tmp_path / "m")
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    meta = json.loads((broken / "config.json").read_text())
    del meta["weights_sha256"]  # the checksum would catch it first; test the reader too
    (broken / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated") as info:
        load_model(broken)
    assert str(weights) in str(info.value)


def test_modified_weights_fail_the_checksum(saved, tmp_path):
    broken = _copy(saved, tmp_path / "m")
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in a tensor: loads fine, scores wrong
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        load_model(broken)


def test_bad_json_names_file_line_and_column(saved, tmp_path):
    broken = _copy(saved, tmp_path / "m")
    (broken / "config.json").write_text('{\n  "architecture": "MFCLIP",\n  oops\n}')
    with pytest.raises(
        CheckpointError, match=r"config\.json is not valid JSON .* line 3, column 3"
    ):
        load_model(broken)
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"best\.json is not valid JSON"):
        load_model(run)


def test_architecture_mismatch_pickle_only_and_other_mistakes(saved, tmp_path):
    other = _copy(saved, tmp_path / "other")
    meta = json.loads((other / "config.json").read_text())
    meta["model"]["noise"]["enabled"] = False
    (other / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not match the architecture"):
        load_model(other)
    pickles = tmp_path / "pickles"
    pickles.mkdir()
    torch.save({"w": torch.zeros(1)}, pickles / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"only pickle weights \(pytorch_model\.bin\)"):
        load_model(pickles)
    with pytest.raises(CheckpointError, match="is a file, not a model folder"):
        load_model(saved / "model.safetensors")
    newer = _copy(saved, tmp_path / "newer")
    meta = json.loads((newer / "config.json").read_text())
    meta["format_version"] = 99
    (newer / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="upgrade mfclip"):
        load_model(newer)
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / "last.json").write_text(json.dumps({"checkpoint": "checkpoints/gone"}))
    with pytest.raises(CheckpointError, match="run folder is incomplete"):
        load_model(dangling)
    assert issubclass(CheckpointError, mfclip.MFCLIPError)


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_saved_files_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    old = os.umask(umask)
    try:
        path = model.save_pretrained(tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == dir_mode
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.iterdir()}
    assert "model.safetensors" in modes and "config.json" in modes
    assert set(modes.values()) == {file_mode}, modes
