"""ONNX export: ONNX Runtime must give PyTorch's probabilities and exactly its patch choice."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

import mfclip
from mfclip import cli
from mfclip.cli.export import register
from mfclip.data.transforms import build_eval_transform
from mfclip.errors import CheckpointError
from mfclip.export import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    ExportError,
    OnnxDetector,
    OnnxPreprocess,
    export_onnx,
    preprocess_image,
    read_metadata,
)
from mfclip.model.selection import select_richest_patch

THRESHOLD = 0.42
NATURAL = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel")


def _natural(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


@pytest.fixture(scope="module")
def model() -> mfclip.MFCLIP:
    torch.manual_seed(0)
    m = mfclip.create_model("mfclip-tiny")
    m.training_info["threshold"] = THRESHOLD
    return m.eval()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> Path:
    return model.save_pretrained(tmp_path_factory.mktemp("export") / "tiny")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """Export from the model object while it is in training mode (it must come back so)."""
    noise = model.visual.noise
    model.train()
    try:
        result = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    finally:
        assert model.training, "export must restore the training mode"
        assert model.visual.noise is noise, "export must restore the noise branch"
        model.eval()
    assert torch.backends.mha.get_fastpath_enabled()
    return result


@pytest.fixture(scope="module")
def session(exported) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])


def _compare(model, session, images: torch.Tensor) -> np.ndarray:
    prob, boxes = session.run(None, {"images": images.numpy()})
    pred = model.predict(images)
    assert prob.shape == (len(images),) and prob.dtype == np.float32
    assert boxes.shape == (len(images), 4) and boxes.dtype == np.int64
    np.testing.assert_allclose(prob, pred.fake_prob.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_array_equal(boxes, pred.boxes.numpy())
    return boxes


def test_export_result(exported):
    assert exported.path.is_file() and exported.size_bytes > 0
    assert exported.outputs == ["fake_prob", "boxes"]
    assert exported.boxes_equal is True
    assert exported.max_abs_diff is not None and exported.max_abs_diff <= DEFAULT_ATOL
    proto = onnx.load(str(exported.path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == DEFAULT_OPSET
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]


@pytest.mark.parametrize("batch", [1, 5])
def test_random_images_match_pytorch(model, session, batch):
    gen = torch.Generator().manual_seed(batch)
    _compare(model, session, torch.randint(0, 256, (batch, 3, 224, 224), generator=gen).byte())


@pytest.mark.parametrize("batch", [1, 5])
def test_natural_images_match_pytorch(model, session, batch):
    pre = OnnxPreprocess()
    images = [preprocess_image(_natural(n), pre)[0] for n in NATURAL[:batch]]
    boxes = _compare(model, session, torch.from_numpy(np.stack(images)))
    if batch > 1:  # the check is only meaningful if the choice varies
        assert len({tuple(b) for b in boxes.tolist()}) > 1


@functools.cache
def _selection_images(size: int = 224) -> torch.Tensor:
    """Images on the uint8 grid (as decoded files are), where quantisation is most fragile."""
    rng = np.random.default_rng(0)
    out = []
    for name in NATURAL:
        img = np.asarray(_natural(name))
        for _ in range(4):  # random crops: many different winners
            y = rng.integers(0, img.shape[0] - size + 1)
            x = rng.integers(0, img.shape[1] - size + 1)
            out.append(img[y : y + size, x : x + size])
    out.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    out.append(np.full((size, size, 3), 77, np.uint8))  # all candidates tie: first wins
    tile = rng.integers(0, 256, (size // 2, size // 2, 3), dtype=np.uint8)
    out.append(np.tile(tile, (2, 2, 1)))  # four identical quadrants: exact tie
    grad = np.linspace(0, 255, size, dtype=np.float32)
    smooth = np.broadcast_to(grad[None, :, None], (size, size, 3)).astype(np.uint8).copy()
    smooth[size // 2 :, size // 2 :] = rng.integers(0, 256, (size // 2, size // 2, 3))
    out.append(smooth)  # the last candidate is the only textured one
    checker = (np.indices((size, size)).sum(0) % 2 * 255).astype(np.uint8)
    out.append(np.repeat(checker[..., None], 3, axis=2))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning", "ignore::UserWarning"
)
@pytest.mark.parametrize(
    "overrides",
    [[], ["noise.stride=28", "noise.select=argmax"], ["noise.patch_size=64", "noise.stride=40"]],
)
def test_patch_selection_is_exact(tmp_path, overrides):
    """Traced, the one selection implementation makes exactly its eager choices in ONNX Runtime."""
    noise = mfclip.resolve_config("mfclip-tiny", overrides=overrides).noise

    class Selection(nn.Module):
        def forward(self, images):
            images01 = images.float() / 255.0
            _, boxes, index = select_richest_patch(
                images01, noise.patch_size, noise.stride, noise.luma, noise.select
            )
            return index, boxes

    images = _selection_images()
    path = tmp_path / "select.onnx"
    torch.onnx.export(
        Selection().eval(),
        (images[:2],),
        str(path),
        dynamo=False,
        opset_version=DEFAULT_OPSET,
        input_names=["images"],
        dynamic_axes={"images": {0: "batch"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    index, boxes = sess.run(None, {"images": images.numpy()})
    ref_index, ref_boxes = Selection()(images)
    np.testing.assert_array_equal(index, ref_index.numpy())
    np.testing.assert_array_equal(boxes, ref_boxes.numpy())
    if noise.select == "argmin":
        assert index[len(NATURAL) * 4 + 1] == 0  # constant image: tie to the first candidate
    assert len(set(index.tolist())) > 2


def test_metadata(exported, model):
    meta = read_metadata(exported.path)
    assert meta == exported.metadata
    pre = model.config.preprocess
    assert meta["format"] == "mfclip-onnx/2"
    assert meta["mfclip_version"] == mfclip.__version__
    assert float(meta["threshold"]) == THRESHOLD
    assert json.loads(meta["outputs"]) == ["fake_prob", "boxes"]
    assert json.loads(meta["noise_enabled"]) is True
    parsed = OnnxPreprocess.from_metadata(meta)
    assert parsed.image_size == pre.image_size and parsed.resize == pre.resize
    assert list(parsed.mean) == pre.mean and list(parsed.std) == pre.std
    assert parsed.interpolation == pre.interpolation
    assert json.loads(meta["config"]) == json.loads(json.dumps(model.config.to_dict()))


def test_preprocess_equals_eval_transform(model):
    transform = build_eval_transform(model.config.preprocess)
    pre = OnnxPreprocess()
    for name in ("coffee", "astronaut", "chelsea"):
        image = _natural(name)
        np.testing.assert_array_equal(preprocess_image(image, pre)[0], transform(image).numpy())
    small = _natural("chelsea").resize((100, 80))  # upscaled by the resize
    np.testing.assert_array_equal(preprocess_image(small, pre)[0], transform(small).numpy())


def test_onnx_detector_matches_pytorch(exported, model, tmp_path):
    detector = OnnxDetector(exported.path)
    assert detector.threshold == THRESHOLD and detector.has_boxes and detector.batch_size is None
    transform = build_eval_transform(model.config.preprocess)
    coffee = _natural("coffee")  # 600x400: resized and cropped
    pred = detector(coffee)
    ref = model.predict(transform(coffee)[None])
    assert abs(float(pred.fake_prob[0]) - float(ref.fake_prob[0])) <= 1e-4
    assert pred.boxes.tolist() == ref.boxes.tolist()
    # crop (x0, y0) -> original: resize 400 -> 224 (scale 0.56), crop offset 56 px in x
    x0, y0, x1, y1 = pred.boxes[0].tolist()
    assert pred.image_boxes[0] == [round((x0 + 56) / 0.56), round(y0 / 0.56),
                                   round((x1 + 56) / 0.56), round(y1 / 0.56)]  # fmt: skip
    path = tmp_path / "astronaut.png"
    _natural("astronaut").save(path)
    inputs = [coffee, np.asarray(_natural("chelsea")), str(path), _natural("rocket")]
    many = detector.predict(inputs)
    refs = torch.cat(
        [model.predict(transform(_natural(n))[None]).fake_prob for n in ("coffee", "chelsea")]
    )
    np.testing.assert_allclose(many.fake_prob[:2], refs.numpy(), atol=1e-4)
    assert many.labels == ["fake" if p >= THRESHOLD else "real" for p in many.fake_prob]


def test_detector_runs_without_torch(exported, tmp_path):
    """Deployments need numpy, Pillow and onnxruntime only (not torch, not onnx)."""
    image = tmp_path / "face.png"
    _natural("chelsea").save(image)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any import of torch (or onnx) now fails
        sys.modules["onnx"] = None
        from mfclip.export import OnnxDetector, read_metadata
        pred = OnnxDetector({str(exported.path)!r})({str(image)!r})
        assert read_metadata({str(exported.path)!r})["format"] == "mfclip-onnx/2"
        assert "torch" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        print(float(pred.fake_prob[0]), pred.boxes.tolist())
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    prob = float(run.stdout.split()[0])
    assert abs(prob - float(OnnxDetector(exported.path)(str(image)).fake_prob[0])) < 1e-6


def test_noise_disabled_exports_probability_only(tmp_path):
    torch.manual_seed(0)
    m = mfclip.create_model("mfclip-tiny", overrides=["noise.enabled=false"]).eval()
    result = export_onnx(m, tmp_path / "no-noise.onnx")
    assert result.outputs == ["fake_prob"] and result.boxes_equal is None
    meta = read_metadata(result.path)
    assert json.loads(meta["outputs"]) == ["fake_prob"]
    assert json.loads(meta["noise_enabled"]) is False
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["fake_prob"]
    for batch in (1, 5):
        gen = torch.Generator().manual_seed(9)
        x = torch.randint(0, 256, (batch, 3, 224, 224), generator=gen).byte()
        (prob,) = sess.run(None, {"images": x.numpy()})
        np.testing.assert_allclose(prob, m.predict(x).fake_prob.numpy(), atol=1e-4)
    pred = OnnxDetector(result.path)(_natural("astronaut"))
    assert pred.boxes is None and pred.image_boxes is None and pred.fake_prob.shape == (1,)


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """The real ``mfclip`` entry point."""
    return cli.main(argv)


def test_cli_static_batch_and_opset(model, model_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sub" / "fixed.onnx"
    argv = ["export", "--model", str(model_dir), "--onnx", str(out), "--opset", "18"]
    assert _main([*argv, "--batch", "3"], monkeypatch) == 0
    stdout = capsys.readouterr().out
    assert "opset 18" in stdout and "batch 3" in stdout and "boxes identical" in stdout
    proto = onnx.load(str(out))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 224, 224]
    detector = OnnxDetector(out)
    assert detector.batch_size == 3 and detector.threshold == THRESHOLD
    images = [_natural(n) for n in NATURAL[:5]]  # 5 images: one full chunk, one padded
    transform = build_eval_transform(model.config.preprocess)
    ref = model.predict(torch.stack([transform(im) for im in images]))
    pred = detector(images)
    np.testing.assert_allclose(pred.fake_prob, ref.fake_prob.numpy(), atol=1e-4)
    np.testing.assert_array_equal(pred.boxes, ref.boxes.numpy())


def test_cli_missing_model_dir(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nope"
    argv = ["export", "--model", str(missing), "--onnx", str(tmp_path / "x.onnx")]
    assert _main(argv, monkeypatch) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and str(missing) in err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        export_onnx(missing, tmp_path / "x.onnx")


def test_cli_without_onnx_package(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    argv = ["export", "--model", str(model_dir), "--onnx", str(tmp_path / "x.onnx")]
    assert _main(argv, monkeypatch) == 1
    assert "pip install 'mfclip[onnx]'" in capsys.readouterr().err


def test_cli_not_a_model_dir(tmp_path, monkeypatch, capsys):
    argv = ["export", "--model", str(tmp_path), "--onnx", str(tmp_path / "x.onnx")]
    assert _main(argv, monkeypatch) == 1
    assert "is neither a saved model" in capsys.readouterr().err


def test_register_defaults_and_bad_batch():
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["export", "--model", "m", "--onnx", "o.onnx"])
    assert args.opset == DEFAULT_OPSET and args.batch is None and args.atol == DEFAULT_ATOL
    assert parser.parse_args(["export", "--model", "m", "--onnx", "o", "--batch", "4"]).batch == 4
    for bad in ("0", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["export", "--model", "m", "--onnx", "o", "--batch", bad])


def test_non_float32_model_is_refused(model, tmp_path):
    import copy

    with pytest.raises(ExportError, match="float32"):
        export_onnx(copy.deepcopy(model).double(), tmp_path / "x.onnx", verify=False)


@pytest.mark.parametrize("method", ["temperature", "platt", "isotonic"])
def test_calibration_and_operating_point_travel_with_the_graph(tmp_path, method):
    """ONNX Runtime reports the calibrated probability and the same verdicts as PyTorch."""
    from mfclip.evaluate.fitting import apply_operating_point, fit_operating_point

    torch.manual_seed(0)
    m = mfclip.create_model("mfclip-tiny").eval()
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (24, 3, 224, 224), generator=gen).byte()
    margins = m.predict(images).logits.float()
    margins = (margins[:, 1] - margins[:, 0]).numpy()
    labels = (margins > np.median(margins)).astype(int)
    labels[:3] = 1 - labels[:3]  # not separable: a non-trivial fit
    fitted = fit_operating_point(margins, labels, method=method, rule="fixed", band=(0.3, 0.7))
    apply_operating_point(m, fitted)
    result = export_onnx(m, tmp_path / "calibrated.onnx")
    assert json.loads(read_metadata(result.path)["calibration"])["method"] == method
    pred = m.predict(images)
    assert not torch.allclose(pred.fake_prob, pred.logits.softmax(-1)[:, 1])  # calibrated
    detector = OnnxDetector(result.path)
    prob, _ = detector.run(images.numpy())
    np.testing.assert_allclose(prob, pred.fake_prob.numpy(), atol=1e-4)
    torch_detector = mfclip.Detector(m, device="cpu")
    pil = [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
    ours = torch_detector(pil)
    onnx_pred = detector(pil)
    assert onnx_pred.labels == [d.label for d in ours]
    np.testing.assert_allclose(onnx_pred.fake_prob, [d.fake_prob for d in ours], atol=1e-4)
    pairs = zip(onnx_pred.reasons, onnx_pred.labels, strict=True)
    assert all(reason.startswith(label.upper()) for reason, label in pairs)
