"""Same image, same score: every way a user can score a file sees the same pixels.

The trainer's validation, ``mfclip evaluate``, the ``detect`` command, ``Detector`` (paths,
bytes, file objects), the HTTP service and ONNX Runtime all decode, crop and score through the
one implementation of each step, so their probabilities agree to float noise (1e-5; ONNX
1e-4) and their richest-patch boxes agree exactly, on awkward files included.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mfclip
from mfclip.cli import main
from mfclip.fileio import current_umask

skdata = pytest.importorskip("skimage.data")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")

from .test_serve import post, serve_in_thread  # noqa: E402

TOL = 1e-5
ONNX_TOL = 1e-4


def _write_files(root: Path) -> dict[str, Path]:
    """A natural photo and the file kinds decoders get wrong."""
    root.mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(skdata.astronaut())
    coffee = Image.fromarray(skdata.coffee())
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image, **kw) -> None:
        files[name] = root / name
        image.save(files[name], **kw)

    save("photo.jpg", photo, quality=90)
    save("palette.png", coffee.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    rgba = photo.convert("RGBA")
    alpha = np.full(photo.size[::-1], 255, np.uint8)
    alpha[:, : photo.width // 3] = 90  # a translucent band: composited over white
    rgba.putalpha(Image.fromarray(alpha))
    save("rgba.png", rgba)
    grey16 = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    save("grey16.png", Image.fromarray(grey16))  # mode I;16
    save("cmyk.jpg", coffee.convert("CMYK"), quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    save("exif.jpg", coffee, exif=exif, quality=92)
    frames = [photo.resize((160, 160)), coffee.resize((160, 160))]
    files["animated.gif"] = root / "animated.gif"
    frames[0].save(files["animated.gif"], save_all=True, append_images=frames[1:], duration=50)
    save("tiny.png", Image.fromarray(skdata.astronaut()[200:208, 200:208]))
    strip = np.asarray(coffee.resize((1000, 60)))
    save("strip.png", Image.fromarray(strip))
    return files


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("one-path")
    files = _write_files(root / "images")
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny")
    model.training_info = {"threshold": 0.5}
    model_dir = model.save_pretrained(root / "model")
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "split", "generator"])
        writer.writeheader()
        for split in ("train", "val", "test"):
            for i, path in enumerate(files.values()):
                writer.writerow(
                    {"path": str(path), "label": ["real", "fake"][i % 2], "split": split,
                     "generator": "" if i % 2 == 0 else "DDPM"}
                )  # fmt: skip
    return root, files, model_dir, manifest


@pytest.fixture(scope="module")
def reference(setting):
    """``Detector`` on the file paths: the scores every other path must reproduce."""
    _, files, model_dir, _ = setting
    detector = mfclip.Detector.from_pretrained(model_dir, device="cpu")
    rows = list(detector.detect_paths([str(p) for p in files.values()], workers=2))
    assert all(r.ok for r in rows), [r.error for r in rows if not r.ok]
    return {Path(r.source).name: (r.fake_prob, r.patch_box) for r in rows}


def _assert_same(got: dict, reference: dict, tol: float = TOL, boxes: bool = True) -> None:
    assert set(got) == set(reference)
    for name, (prob, box) in got.items():
        assert abs(prob - reference[name][0]) <= tol, (name, prob, reference[name][0])
        if boxes:
            assert box == reference[name][1], name


def test_the_files_are_what_they_claim(setting):
    _, files, _, _ = setting
    modes = {name: Image.open(path).mode for name, path in files.items()}
    assert modes["palette.png"] == "P" and modes["rgba.png"] == "RGBA"
    assert modes["grey16.png"].startswith("I") and modes["cmyk.jpg"] == "CMYK"
    assert getattr(Image.open(files["animated.gif"]), "n_frames", 1) == 2
    assert Image.open(files["exif.jpg"]).getexif()[0x0112] == 6


def test_detector_on_paths_bytes_streams_and_one_at_a_time(setting, reference):
    _, files, model_dir, _ = setting
    detector = mfclip.Detector.from_pretrained(model_dir, device="cpu")
    for kind in ("path", "bytes", "stream"):
        inputs = {
            "path": [str(p) for p in files.values()],
            "bytes": [p.read_bytes() for p in files.values()],
            "stream": [io.BytesIO(p.read_bytes()) for p in files.values()],
        }[kind]
        rows = detector(inputs)
        got = {n: (r.fake_prob, r.patch_box) for n, r in zip(files, rows, strict=True)}
        _assert_same(got, reference)
    single = {n: detector(str(p)) for n, p in files.items()}
    _assert_same({n: (r.fake_prob, r.patch_box) for n, r in single.items()}, reference)


def test_trainer_validation(setting, reference):
    from mfclip.train import load_train_config
    from mfclip.train.data import build_datasets
    from mfclip.train.distributed import DistEnv
    from mfclip.train.selection import validation_scores

    _, _, model_dir, manifest = setting
    cfg = load_train_config(
        {
            "model": {"preset": "mfclip-tiny"},
            "data": {"manifest": str(manifest), "eval_batch_size": 4, "num_workers": 0},
        },
        [],
    )
    model = mfclip.load_model(model_dir)
    _, val = build_datasets(cfg, model)
    scores = validation_scores(model, val, cfg, DistEnv())
    names = [Path(val.records[i].path).name for i in scores.indices]
    got = {n: (float(p), None) for n, p in zip(names, scores.scores, strict=True)}
    _assert_same(got, reference, boxes=False)


def test_detect_command(setting, reference, tmp_path):
    _, files, model_dir, _ = setting
    out = tmp_path / "results.jsonl"
    argv = ["detect", *map(str, files.values()), "--model", str(model_dir), "--out", str(out)]
    assert main([*argv, "--quiet", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    _assert_same(
        {Path(r["source"]).name: (r["fake_prob"], r["patch_box"]) for r in rows}, reference
    )


def test_evaluate_command(setting, reference, tmp_path):
    _, _, model_dir, manifest = setting
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model_dir), "--data", str(manifest), "--out", str(out)]
    assert main([*argv, "--quiet", "--workers", "0", "--bootstrap", "0", "--device", "cpu"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    got = {Path(r["path"]).name: (float(r["score"]), None) for r in rows}
    _assert_same(got, reference, boxes=False)
    # Reports and plots get an ordinary file's permissions (not mkstemp's 0600).
    expected = 0o666 & ~current_umask()
    for name in ("scores.csv", "metrics.json", "report.md", "roc.png"):
        assert stat.S_IMODE((out / name).stat().st_mode) == expected, name


def test_http_service(setting, reference):
    from mfclip.serve.app import create_app

    _, files, model_dir, _ = setting
    detector = mfclip.Detector.from_pretrained(model_dir, device="cpu")
    with serve_in_thread(create_app(detector, batch_size=4, max_wait_ms=20)) as base:
        got = {}
        for name, path in files.items():
            r = post(base, path.read_bytes(), name=name)
            assert r.status_code == 200, r.text
            got[name] = (r.json()["fake_prob"], r.json()["patch_box"])
    _assert_same(got, reference)


def test_onnx_runtime(setting, reference, tmp_path):
    from mfclip.export import OnnxDetector, export_onnx

    _, files, model_dir, _ = setting
    result = export_onnx(model_dir, tmp_path / "model.onnx")
    pred = OnnxDetector(result.path)([str(p) for p in files.values()])
    got = {
        n: (float(p), box)
        for n, p, box in zip(files, pred.fake_prob, pred.image_boxes, strict=True)
    }
    _assert_same(got, reference, tol=ONNX_TOL)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o666 & ~current_umask()


def test_face_crops_score_the_same_from_data_faces_and_detect_faces(setting, tmp_path):
    """``evaluate`` on ``data faces`` crops == ``detect --faces`` on the original files."""
    _, _, model_dir, _ = setting
    photo = Image.fromarray(skdata.astronaut())
    canvas = Image.new("RGB", (900, 640), (40, 90, 160))
    canvas.paste(photo.resize((400, 400)), (371, 117))
    variants = {
        "full.png": photo,
        "small.png": photo.resize((300, 300), Image.Resampling.BICUBIC),
        "canvas.png": canvas,
        "mirror.png": photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "large.jpg": photo.resize((900, 900), Image.Resampling.BICUBIC),
    }
    originals = tmp_path / "originals"
    originals.mkdir()
    rows = []
    for i, (name, image) in enumerate(variants.items()):
        image.save(originals / name)
        rows.append({"path": str(originals / name), "label": ["real", "fake"][i % 2],
                     "split": "test", "generator": "" if i % 2 == 0 else "DDPM"})  # fmt: skip
    manifest = tmp_path / "originals.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    crops = tmp_path / "crops"
    assert main(["data", "faces", str(manifest), "--out-dir", str(crops), "--workers", "1"]) == 0
    evaluated = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model_dir), "--data", str(crops / "manifest.csv")]
    argv += ["--out", str(evaluated), "--quiet", "--workers", "0", "--bootstrap", "0"]
    assert main([*argv, "--device", "cpu"]) == 0
    crop_source = {
        r["path"]: Path(r["source"]).name
        for r in csv.DictReader((crops / "manifest.csv").open())
        if r["status"] == "ok"
    }
    assert len(crop_source) == len(variants), "Haar must find the face in every variant"
    from_crops = {
        crop_source[Path(r["path"]).relative_to(crops).as_posix()]: float(r["score"])
        for r in csv.DictReader((evaluated / "scores.csv").open())
    }
    out = tmp_path / "detect.jsonl"
    argv = ["detect", *map(str, sorted(originals.iterdir())), "--model", str(model_dir)]
    assert main([*argv, "--faces", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    detected = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["error"] is None and r["face_box"] for r in detected)
    from_originals = {Path(r["source"]).name: r["fake_prob"] for r in detected}
    assert set(from_crops) == set(from_originals) == set(variants)
    for name, prob in from_originals.items():
        assert abs(prob - from_crops[name]) <= TOL, (name, prob, from_crops[name])
