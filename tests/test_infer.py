"""Detection for users: the Python API, the detect command, videos, faces, explanations."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mfclip
from mfclip import Detection, Detector
from mfclip.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    model.training_info = {"threshold": 0.5}
    return model.save_pretrained(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def detector(model_dir) -> Detector:
    return Detector.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # 512x512 RGB, a real photograph with a face


def test_api_accepts_every_image_type_consistently(detector, photo, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(photo).save(path)
    pil = Image.fromarray(photo)
    tensor = torch.from_numpy(photo).permute(2, 0, 1).float() / 255
    results = detector([pil, photo, tensor, str(path), path])
    assert all(isinstance(r, Detection) and r.ok for r in results)
    probs = [r.fake_prob for r in results]
    assert np.allclose(probs, probs[0], atol=1e-5)
    single = detector(pil)
    assert isinstance(single, Detection) and single.label in ("real", "fake")
    assert single.label == ("fake" if single.fake_prob >= detector.threshold else "real")
    grey = detector(np.asarray(pil.convert("L")))
    assert grey.ok
    with pytest.raises(TypeError, match="unsupported image type"):
        detector(42)


def test_detect_paths_scores_like_the_model_on_eval_transform(detector, photo, tmp_path):
    """Worker decoding + uint8 hand-over + batch normalising == the plain float pipeline."""
    from mfclip.data.transforms import build_eval_transform
    from mfclip.preprocess.decode import load_image

    paths = []
    for i, size in enumerate([(512, 512), (300, 420), (640, 360)]):
        paths.append(tmp_path / f"p{i}.png")
        Image.fromarray(photo).resize(size, Image.BICUBIC).save(paths[-1])
    transform = build_eval_transform(detector.model.config.preprocess)
    with torch.no_grad():
        batch = torch.stack([transform(load_image(p)) for p in paths])
        expected = detector.model.predict(batch).fake_prob.tolist()
    got = [r.fake_prob for r in detector.detect_paths(paths, batch_size=2, workers=1)]
    assert got == pytest.approx(expected, abs=1e-6)
    assert detector.stats.images == 3 and 0.0 <= detector.stats.wait_fraction <= 1.0


def test_patch_box_is_in_original_coordinates(detector, photo):
    small = Image.fromarray(photo).resize((224, 224), Image.BICUBIC)
    r224, r512 = detector(small), detector(Image.fromarray(photo))
    assert r224.patch_box[2] - r224.patch_box[0] == 112
    assert r512.patch_box[2] - r512.patch_box[0] == pytest.approx(256, abs=2)
    assert all(0 <= v <= 512 for v in r512.patch_box)


def test_bad_input_becomes_an_error_row(detector, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    result = detector(bad)
    assert not result.ok and result.fake_prob is None and "bad.jpg" not in (result.error or "x")


def test_faces_option_reports_the_face_box(model_dir, photo):
    det = Detector.from_pretrained(model_dir, device="cpu", faces=True)
    result = det(Image.fromarray(photo))
    assert result.ok and result.face_box is not None
    x0, y0, x1, y1 = result.face_box
    assert 150 < (x0 + x1) / 2 < 290 and 60 < (y0 + y1) / 2 < 170
    noface = det(np.full((200, 200, 3), 127, np.uint8))
    assert not noface.ok and "no face" in noface.error


def _video(path: Path, frames: int = 12) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 96))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    writer.release()
    return path


def test_detect_cli_on_a_mixed_folder(model_dir, photo, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo).save(folder / "good.png")
    Image.fromarray(photo[:300, :200]).save(folder / "sub" / "good2.jpg")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("not an image")
    _video(folder / "clip.avi")
    out = tmp_path / "results.csv"
    explain = tmp_path / "explain"
    argv = ["detect", str(folder), "--model", str(model_dir), "--out", str(out), "--workers", "2"]
    assert main([*argv, "--frames", "4", "--per-frame", "--explain", str(explain)]) == 0
    rows = {Path(r["source"]).name + (f"#{r['frame']}" if r["frame"] else ""): r
            for r in csv.DictReader(out.open())}  # fmt: skip
    assert rows["good.png"]["label"] in ("real", "fake") and not rows["good.png"]["error"]
    assert rows["good2.jpg"]["patch_box"]
    assert rows["empty.jpg"]["error"] and not rows["empty.jpg"]["fake_prob"]
    assert rows["text.png"]["error"]
    video = rows["clip.avi"]
    assert video["kind"] == "video" and video["frames"] == "4"
    frame_probs = [float(r["fake_prob"]) for k, r in rows.items() if k.startswith("clip.avi#")]
    assert len(frame_probs) == 4
    assert float(video["fake_prob"]) == pytest.approx(np.mean(frame_probs), abs=1e-5)
    pngs = sorted(p.name for p in explain.iterdir())
    assert len(pngs) == 2 and all(p.endswith(".png") for p in pngs)
    assert "waiting for decoded images" in capsys.readouterr().err


def test_decoding_threads_processes_and_inline_give_the_same_rows(model_dir, photo, tmp_path):
    """Every decode mode, and the faces option (one OpenCV detector per thread), same output."""
    files = []
    for i in range(7):
        files.append(tmp_path / f"f{i}.jpg")
        Image.fromarray(np.roll(photo, 37 * i, axis=1)).save(files[-1], quality=90)
    files.insert(3, tmp_path / "missing.jpg")
    files.append(_video(tmp_path / "clip.avi", frames=6))
    det = Detector.from_pretrained(model_dir, device="cpu", faces=True, frames=3)
    runs = {}
    for mode, workers in [("thread", 0), ("thread", 3), ("process", 2)]:
        rows = det.detect_paths(files, batch_size=3, workers=workers, decode=mode, per_frame=True)
        runs[mode, workers] = [r.to_dict() for r in rows]
    reference = runs.pop(("thread", 0))
    assert [r["source"] for r in reference if r["kind"] != "frame"] == [str(f) for f in files]
    assert reference[3]["error"] and reference[0]["face_box"] is not None
    for rows in runs.values():
        assert [r["source"] for r in rows] == [r["source"] for r in reference]
        assert [r["error"] for r in rows] == [r["error"] for r in reference]
        assert [r["face_box"] for r in rows] == [r["face_box"] for r in reference]
        for got, want in zip(rows, reference, strict=True):
            assert got["fake_prob"] == pytest.approx(want["fake_prob"], abs=1e-6)


def test_detect_paths_rejects_bad_settings_and_stops_cleanly(detector, photo, tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(photo).save(path)
    with pytest.raises(ValueError, match="decode must be"):
        list(detector.detect_paths([path], decode="fork"))
    with pytest.raises(ValueError, match="workers must be"):
        list(detector.detect_paths([path], workers=-1))
    rows = detector.detect_paths([path] * 50, batch_size=4, workers=2)
    assert next(rows).ok
    rows.close()  # the consumer stops early: pending decodes are cancelled, nothing hangs
    assert not any(t.name.startswith("mfclip-decode") for t in threading.enumerate())


def test_detect_exit_status_when_nothing_scores(model_dir, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    assert main(["detect", str(tmp_path / "x.jpg"), "--model", str(model_dir), "--quiet"]) == 1
    assert main(["detect", str(tmp_path / "nope-*.jpg"), "--model", str(model_dir), "--quiet"]) == 1


def test_detect_rejects_negative_workers_before_touching_the_output(model_dir, tmp_path, capsys):
    out = tmp_path / "results.csv"
    out.write_text("earlier results\n")
    argv = ["detect", str(tmp_path), "--model", str(model_dir), "--out", str(out)]
    with pytest.raises(SystemExit):
        main([*argv, "--workers", "-1"])
    assert "--workers: must be >= 0, got -1" in capsys.readouterr().err
    assert out.read_text() == "earlier results\n"


def test_explanation_from_the_api(detector, photo, tmp_path):
    exp = detector.explain(Image.fromarray(photo))
    assert exp.image.size[0] == 3 * 256 and exp.heatmap.shape == (224, 224)
    assert exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
    assert exp.noise_map is not None and exp.noise_map.shape == (112, 112, 3)
    png = exp.to_png_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert exp.save(tmp_path / "e.png").is_file()
