"""Decoding: every broken-file case gives one clear error; every odd-but-valid image loads right."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfclip.cli.data import register  # noqa: F401  (the CLI module imports cleanly)
from mfclip.data import ImageDecodeError, Record, load_image, write_manifest
from mfclip.data.check import check_records

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares a huge size in a few bytes (a decompression bomb's signature)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_broken_files(folder: Path) -> dict[str, str]:
    """One file per failure case of issue point 3 -> a fragment its error reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    data = _jpeg_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    png = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(png, format="PNG")
    (folder / "truncated.png").write_bytes(png.getvalue()[:-30])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file, not a picture\n")
    (folder / "folder.png").mkdir()
    _png_header_only(folder / "bomb.png", 15000, 15000)
    (folder / "dangling.png").symlink_to(folder / "does-not-exist.png")
    return {
        "truncated.jpg": "truncated",
        "truncated.png": "truncated",
        "empty.jpg": "empty file (0 bytes)",
        "notes.jpg": "not an image",
        "folder.png": "is a directory",
        "bomb.png": "decompression bomb",
        "dangling.png": "file not found",
        "missing.jpg": "file not found",
    }


def make_good_files(folder: Path) -> dict[str, tuple[tuple[int, int], tuple[int, int, int]]]:
    """Valid images in awkward encodings -> (expected size, expected pixel (0, 0))."""
    folder.mkdir(parents=True, exist_ok=True)
    # EXIF orientation 6: stored 40x20 with a red left half; displayed rotated 90° clockwise.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(Image.new("RGB", (20, 20), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(folder / "exif6.jpg", exif=exif, quality=100, subsampling=0)
    Image.new("L", (16, 12), 77).save(folder / "grey.png")
    Image.new("1", (16, 12), 1).save(folder / "bilevel.png")
    rgba = Image.new("RGBA", (16, 12), (255, 0, 0, 0))
    rgba.save(folder / "transparent.png")
    Image.new("RGBA", (16, 12), (10, 200, 30, 255)).save(folder / "opaque_rgba.png")
    Image.new("LA", (16, 12), (50, 255)).save(folder / "grey_alpha.png")
    Image.new("RGB", (16, 12), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE).save(
        folder / "palette.png"
    )
    Image.new("CMYK", (16, 12), (0, 255, 255, 0)).save(folder / "cmyk.jpg", quality=100)
    grey16 = np.full((12, 16), 65535, dtype=np.uint16)
    grey16[0, 0] = 32896
    Image.fromarray(grey16).save(folder / "grey16.png")
    frames = [Image.new("RGB", (16, 12), RED), Image.new("RGB", (16, 12), BLUE)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    frames[0].save(folder / "animated.webp", save_all=True, append_images=frames[1:], lossless=True)
    return {
        "exif6.jpg": ((20, 40), RED),
        "grey.png": ((16, 12), (77, 77, 77)),
        "bilevel.png": ((16, 12), (255, 255, 255)),
        "transparent.png": ((16, 12), (255, 255, 255)),
        "opaque_rgba.png": ((16, 12), (10, 200, 30)),
        "grey_alpha.png": ((16, 12), (50, 50, 50)),
        "palette.png": ((16, 12), (0, 128, 255)),
        "cmyk.jpg": ((16, 12), RED),
        "grey16.png": ((16, 12), (128, 128, 128)),
        "animated.gif": ((16, 12), RED),
        "animated.webp": ((16, 12), RED),
    }


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, dict, dict]:
    return tmp_path, make_broken_files(tmp_path / "bad"), make_good_files(tmp_path / "good")


def test_each_broken_file_raises_one_clear_error(files: tuple[Path, dict, dict]) -> None:
    root, broken, _ = files
    for name, fragment in broken.items():
        path = root / "bad" / name
        with pytest.raises(ImageDecodeError) as info:
            load_image(path)
        assert isinstance(info.value, ValueError)
        assert info.value.path == str(path)
        assert fragment in info.value.reason, (name, info.value.reason)
        assert str(path) in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize("limit", [100 * 100, None])
def test_pixel_limit_is_configurable(tmp_path: Path, limit: int | None) -> None:
    Image.new("RGB", (120, 100), RED).save(tmp_path / "big.png")
    if limit is None:
        assert load_image(tmp_path / "big.png", max_pixels=None).size == (120, 100)
    else:
        with pytest.raises(ImageDecodeError, match="120x100"):
            load_image(tmp_path / "big.png", max_pixels=limit)


def test_good_files_load_as_upright_rgb(files: tuple[Path, dict, dict]) -> None:
    root, _, good = files
    for name, (size, pixel) in good.items():
        image = load_image(root / "good" / name)
        assert image.mode == "RGB", name
        assert image.size == size, name
        got = image.getpixel((0, 0))
        assert np.abs(np.subtract(got, pixel)).max() <= 3, (name, got, pixel)
    # The rotated image's bottom is the stored right half (blue).
    rotated = load_image(root / "good" / "exif6.jpg")
    assert np.abs(np.subtract(rotated.getpixel((10, 35)), BLUE)).max() <= 3


def test_check_reports_exactly_the_broken_files(files: tuple[Path, dict, dict]) -> None:
    root, broken, good = files
    records = [Record(f"bad/{n}", "fake", group=n) for n in broken]
    records += [Record(f"good/{n}", "real", group=n) for n in good]
    problems = check_records(records, root, workers=2, progress=False)
    by_name = {Path(p.path).name: p.reason for p in problems}
    assert set(by_name) == set(broken)
    for name, fragment in broken.items():
        assert fragment in by_name[name], (name, by_name[name])


def test_check_command_lists_problems_and_exit_code(
    files: tuple[Path, dict, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    from mfclip.cli import main

    root, _, good = files
    manifest = root / "m.csv"
    rows = [Record(str(root / "good" / n), "real", group=n) for n in good]
    write_manifest(rows, manifest)
    assert main(["data", "check", str(manifest), "--workers", "1"]) == 0
    rows.append(Record(str(root / "bad" / "empty.jpg"), "fake", group="e"))
    rows.append(Record(str(root / "good" / "grey.png"), "real", group="g2", split="test"))
    write_manifest(rows, manifest)
    assert main(["data", "check", str(manifest), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "empty.jpg: empty file (0 bytes)" in out
    assert "listed 2 times" in out
    assert f"checked {len(rows)} files: 2 problem(s)" in out
