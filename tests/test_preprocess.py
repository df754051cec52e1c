"""The torch-free preprocessing: one decoder for paths, bytes and streams; the model geometry."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from mfclip.errors import ImageDecodeError, MFCLIPError
from mfclip.preprocess import Placement, decode_image, fit, load_image


class Geometry:
    image_size = 224
    resize = 224
    interpolation = "bicubic"


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_paths_bytes_and_streams_decode_identically(tmp_path):
    image = _photo(90, 60).convert("RGBA")
    image.putalpha(128)
    path = tmp_path / "a.png"
    image.save(path)
    data = path.read_bytes()
    ref = np.asarray(load_image(path))
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), path.open("rb")):
        assert np.array_equal(np.asarray(decode_image(source)), ref)
    # Alpha composited over white, as viewers show it.
    assert ref.dtype == np.uint8 and ref.shape == (60, 90, 3) and ref.min() >= 127


def test_decode_errors_name_the_source(tmp_path):
    with pytest.raises(ImageDecodeError, match="upload: empty file"):
        decode_image(b"", name="upload")
    with pytest.raises(ImageDecodeError, match="<bytes>: not an image"):
        decode_image(b"definitely not an image")
    data = io.BytesIO()
    _photo(64, 64).save(data, format="PNG")
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data.getvalue()[:200])
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(data.getvalue(), max_pixels=1000)
    with pytest.raises(ImageDecodeError, match="file not found"):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(TypeError, match="binary mode"):
        decode_image(io.StringIO("text"))
    assert issubclass(ImageDecodeError, MFCLIPError) and issubclass(ImageDecodeError, ValueError)


@pytest.mark.parametrize(
    ("width", "height"), [(301, 203), (224, 224), (150, 400), (8, 8), (1000, 60)]
)
def test_fit_and_placement_map_model_pixels_back(width, height):
    image = _photo(width, height)
    pixels, placement = fit(image, Geometry())
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8 and pixels.flags.writeable
    scale = 224 / min(width, height)
    assert placement.scale == pytest.approx(scale)
    x0, y0, x1, y1 = placement.to_source([0, 0, 224, 224])
    # The crop is the central square of the short side, in source pixels.
    assert abs((x1 - x0) - min(width, height)) <= 1 and abs((y1 - y0) - min(width, height)) <= 1
    assert abs(x0 - (width - (x1 - x0)) / 2) <= 1 and abs(y0 - (height - (y1 - y0)) / 2) <= 1
    if (width, height) == (224, 224):
        assert np.array_equal(pixels, np.asarray(image)) and placement == Placement()


def test_placement_composes_with_a_face_crop():
    face = Placement((100.0, 40.0), 256 / 128)  # a 128 px face region at (100, 40) -> 256 px
    model = Placement((16.0, 16.0), 224 / 256)  # 256 -> 224 centre crop
    combined = model.within(face)
    assert combined.to_source([0, 0, 224, 224]) == [108, 48, 236, 176]


def test_preprocessing_imports_no_torch():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None
        from mfclip.preprocess import decode_image, fit
        from mfclip.export.runtime import preprocess_image
        print("ok")
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_tensors_and_arrays_follow_the_same_pixel_rule():
    """Floats in [0, 1] are scaled; larger floats are 0-255 pixels; the same for both kinds."""
    import torch

    from mfclip.inference.inputs import to_rgb_image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 30, 3)).astype(np.float32)
    for values in (pixels, pixels / 255.0):
        tensor = torch.from_numpy(values).permute(2, 0, 1)
        assert np.array_equal(np.asarray(to_rgb_image(tensor)), np.asarray(to_rgb_image(values)))
    assert np.array_equal(
        np.asarray(to_rgb_image(torch.from_numpy(pixels).permute(2, 0, 1))), pixels
    )
