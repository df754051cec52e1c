"""Face detection and cropping on a real photograph (scikit-image's astronaut) and a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

from mfclip.cli import main  # noqa: E402
from mfclip.data import ManifestDataset, Record, read_manifest, write_manifest  # noqa: E402
from mfclip.data.faces import (  # noqa: E402
    FaceBox,
    FaceDetector,
    FaceOptions,
    HaarFaceDetector,
    build_detector,
    crop_face,
    extract_faces,
    sample_indices,
    square_region,
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()  # 512x512 RGB photograph of Eileen Collins


def test_haar_finds_the_face_in_a_real_photograph(astronaut: np.ndarray) -> None:
    detector = HaarFaceDetector()
    assert isinstance(detector, FaceDetector)
    boxes = detector.detect(astronaut)
    assert len(boxes) >= 1
    face = max(boxes, key=lambda b: b.area)
    # The face is around x 180-270, y 60-160 in this photograph.
    assert 150 < face.x + face.w / 2 < 290 and 60 < face.y + face.h / 2 < 170
    assert 60 < face.w < 160


def test_crop_is_square_with_margin_and_keeps_rgb(astronaut: np.ndarray) -> None:
    box = FaceBox(177, 66, 95, 95)
    face = crop_face(astronaut, box, margin=1.3, size=64)
    crop = face.pixels
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    x0, y0, side = square_region(box, 1.3, 512, 512)
    assert side == round(95 * 1.3)
    # The placement maps the crop's corners back to the square region of the photograph.
    assert face.placement.to_source([0, 0, 64, 64]) == [x0, y0, x0 + side, y0 + side]
    assert face.box == [177, 66, 272, 161]
    reference = cv2.resize(
        astronaut[y0 : y0 + side, x0 : x0 + side], (64, 64), interpolation=cv2.INTER_AREA
    )
    assert np.abs(crop.astype(int) - reference.astype(int)).mean() < 2
    swapped = reference[..., ::-1]  # a BGR mix-up would be far off on this colourful photo
    assert np.abs(crop.astype(int) - swapped.astype(int)).mean() > 10


def test_square_region_stays_inside_or_pads() -> None:
    assert square_region(FaceBox(0, 0, 20, 20), 1.5, 100, 100) == (0, 0, 30)
    assert square_region(FaceBox(90, 90, 10, 10), 2.0, 100, 100) == (80, 80, 20)
    image = np.full((40, 40, 3), 200, np.uint8)
    crop = crop_face(image, FaceBox(0, 0, 40, 40), margin=2.0, size=80).pixels
    assert crop.shape == (80, 80, 3)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[40, 40].tolist() == [200, 200, 200]


def test_sample_indices_are_uniform() -> None:
    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(3, 32) == [0, 1, 2]
    assert sample_indices(0, 5) == []


class CentreDetector:
    """A stand-in 'stronger detector': always the centre quarter (shows the plug-in path)."""

    name = "centre"

    def __init__(self, fraction: float = 0.5) -> None:
        self.fraction = fraction

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        side = min(h, w) * self.fraction
        return [FaceBox((w - side) / 2, (h - side) / 2, side, side)]


def test_build_detector_by_name_or_import_path() -> None:
    assert build_detector("haar").name.startswith("haar")
    custom = build_detector(f"{__name__}:CentreDetector", fraction=0.25)
    assert isinstance(custom, CentreDetector) and custom.fraction == 0.25
    with pytest.raises(ValueError, match="unknown face detector"):
        build_detector("retinaface-without-weights")
    with pytest.raises(RuntimeError, match="weights not found"):
        build_detector("yunet", weights="missing.onnx")


def _write_video(path: Path, frame: np.ndarray, count: int) -> None:
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0])
    )
    assert writer.isOpened()
    for i in range(count):
        writer.write(cv2.cvtColor(np.roll(frame, i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()


def test_faces_command_images_video_no_face_and_errors(
    tmp_path: Path, astronaut: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "real").mkdir(parents=True)
    (data / "fake").mkdir()
    Image.fromarray(astronaut).save(data / "real" / "astronaut.png")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(data / "real" / "wall.png")
    (data / "fake" / "broken.jpg").write_bytes(b"")
    _write_video(data / "fake" / "clip.avi", astronaut, 10)
    rows = [  # importers produce paths valid from the current directory (here: absolute)
        Record(
            str(data / "real/astronaut.png"), "real", generator="photo", split="train", group="p1"
        ),
        Record(str(data / "real/wall.png"), "real", generator="photo", split="train", group="p2"),
        Record(str(data / "fake/broken.jpg"), "fake", generator="x", split="test", group="p3"),
        Record(str(data / "fake/clip.avi"), "fake", generator="x", split="test", group="video1"),
    ]
    manifest = write_manifest(rows, data / "manifest.csv")
    out_dir = tmp_path / "faces"
    argv = ["data", "faces", str(manifest), "--out-dir", str(out_dir), "--size", "64"]
    assert main([*argv, "--frames", "4", "--workers", "2"]) == 0
    assert "wrote 7 rows" in capsys.readouterr().out
    out = read_manifest(out_dir / "manifest.csv")
    by_source: dict[str, list[Record]] = {}
    for row in out:
        by_source.setdefault(Path(row.extra["source"]).name, []).append(row)
    [face] = by_source["astronaut.png"]
    assert face.status == "ok" and face.group == "p1" and face.split == "train"
    assert face.path == "real/astronaut.png"  # mirrors the input layout, relative to OUT_DIR
    crop = np.asarray(Image.open(out_dir / face.path))
    assert crop.shape == (64, 64, 3)
    [wall] = by_source["wall.png"]
    assert (wall.status, wall.extra["reason"]) == ("no_face", "no face detected")
    [broken] = by_source["broken.jpg"]
    assert broken.status == "error" and "empty file" in broken.extra["reason"]
    frames = by_source["clip.avi"]
    assert [int(r.extra["frame"]) for r in frames] == [0, 3, 6, 9]
    assert {r.group for r in frames} == {"video1"} and all(r.status == "ok" for r in frames)
    # The loader uses only the usable rows of the face manifest.
    dataset = ManifestDataset(out_dir / "manifest.csv")
    assert len(dataset) == 5 and dataset[0]["image"].shape == (3, 224, 224)


def test_extract_faces_with_plugged_detector(tmp_path: Path) -> None:
    Image.new("RGB", (100, 60), (10, 20, 30)).save(tmp_path / "a.png")
    options = FaceOptions(size=32, detector=f"{__name__}:CentreDetector")
    [row] = extract_faces(
        [Record("a.png", "real")], tmp_path, tmp_path / "out", options, workers=1, progress=False
    )
    assert row.status == "ok" and row.extra["detector"] == "centre"
    assert row.extra["box"] == "35.0,15.0,30.0,30.0"
    assert Image.open(row.path).size == (32, 32)


def test_haar_finds_a_face_that_fills_the_frame(astronaut: np.ndarray) -> None:
    """Pre-cropped datasets: the face touches the borders; the padded retry finds it."""
    tight = np.ascontiguousarray(astronaut[70:160, 180:270])
    assert HaarFaceDetector(pad=0).detect(tight) == []
    boxes = HaarFaceDetector().detect(tight)
    assert boxes
    face = max(boxes, key=lambda b: b.area)
    assert abs(face.x + face.w / 2 - 45) < 20 and abs(face.y + face.h / 2 - 45) < 20
