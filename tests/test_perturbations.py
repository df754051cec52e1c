"""Robustness perturbations: the travel chains, clear parse errors, and reals hit like fakes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import mfclip
from mfclip.data.dataset import ManifestDataset
from mfclip.data.functional import jpeg
from mfclip.data.perturbations import CHAINS, PerturbedTransform, parse_perturbations
from mfclip.data.transforms import build_eval_transform
from mfclip.errors import MFCLIPError
from mfclip.evaluate.score_records import score_dataset

from .test_train import make_dataset


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(1, height // 10), max(1, width // 10), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.integers(-20, 20, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image).astype(int) + noise, 0, 255).astype(np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_chains_parse_with_labels_and_descriptions() -> None:
    items = parse_perturbations("social1080 social512;webp=50,80 rejpeg=90 crop=0.8 jpeg=70")
    assert [p.label for p in items] == [
        "social1080", "social512", "webp=50", "webp=80", "rejpeg=90", "crop=0.8", "jpeg=70",
    ]  # fmt: skip
    assert items[0].description == "long side at most 1080 px, then JPEG 75"
    assert parse_perturbations("social=1080")[0].label == "social1080"
    assert set(CHAINS) == {"social1080", "social512"}


def test_social_downscales_the_long_side_then_jpeg_75() -> None:
    big = photo(1600, 1200)
    social1080, social512 = parse_perturbations("social1080 social512")
    assert social1080(big).size == (1080, 810)
    assert social512(big).size == (512, 384)
    assert social512(photo(300, 1000)).size == (154, 512)
    small = photo(300, 200)  # already small: never up-scaled, only re-encoded
    assert np.array_equal(pixels(social1080(small)), pixels(jpeg(small, 75)))


def test_webp_rejpeg_and_crop() -> None:
    image = photo(120, 80)
    webp, rejpeg, crop = parse_perturbations("webp=40 rejpeg=30 crop=0.5")
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=40)
    assert np.array_equal(pixels(webp(image)), pixels(Image.open(buffer).convert("RGB")))
    assert np.abs(pixels(webp(image)) - pixels(image)).mean() > 0.5
    assert np.array_equal(pixels(rejpeg(image)), pixels(jpeg(jpeg(image, 30), 30)))
    cropped = crop(image)
    assert cropped.size == (60, 40)
    assert np.array_equal(pixels(cropped), pixels(image)[20:60, 30:90])
    assert parse_perturbations("crop=1")[0](image).size == image.size


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("social1080=3", "takes no value"),
        ("social=8", "longest side"),
        ("webp=0", "WebP quality"),
        ("rejpeg=101", "JPEG quality"),
        ("jpeg=50.5", "whole number"),
        ("crop=0", r"\(0, 1\]"),
        ("crop=1.5", r"\(0, 1\]"),
        ("webp", "webp=v1,v2"),
        ("crop=big", "not a number"),
        ("instagram", "unknown perturbation 'instagram'.*social1080"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(MFCLIPError, match=message):
        parse_perturbations(spec)
    with pytest.raises(ValueError):  # still a ValueError for older callers
        parse_perturbations(spec)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mfclip.create_model("mfclip-tiny")


def test_every_item_is_perturbed_whatever_its_label(manifest, model) -> None:
    base = build_eval_transform(model.config.preprocess)
    clean = ManifestDataset(manifest, base, split="test")
    for pert in parse_perturbations("jpeg=50 webp=50 social512 crop=0.8 blur=1"):
        dirty = ManifestDataset(manifest, PerturbedTransform(pert, base), split="test")
        changed = {0: 0, 1: 0}
        for i in range(len(clean)):
            a, b = clean[i], dirty[i]
            assert a["label"] == b["label"] and a["path"] == b["path"]
            changed[a["label"]] += int(not torch.equal(a["image"], b["image"]))
        n_real = sum(1 for i in range(len(clean)) if clean[i]["label"] == 0)
        assert changed == {0: n_real, 1: len(clean) - n_real}, pert.label


def test_perturbations_change_real_and_fake_scores_alike(manifest, model) -> None:
    base = build_eval_transform(model.config.preprocess)
    kw = {"num_workers": 0, "progress": False}
    clean = score_dataset(model, ManifestDataset(manifest, base, split="test"), **kw)
    for pert in parse_perturbations("jpeg=30 social512"):
        dataset = ManifestDataset(manifest, PerturbedTransform(pert, base), split="test")
        dirty = score_dataset(model, dataset, **kw)
        assert [r["path"] for r in dirty] == [r["path"] for r in clean]
        for label in (0, 1):
            moved = [
                abs(a["raw_score"] - b["raw_score"]) > 0
                for a, b in zip(clean, dirty, strict=True)
                if a["label"] == label
            ]
            assert moved and all(moved), (pert.label, label)
