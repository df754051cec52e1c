"""Preprocessing, training augmentations, evaluation perturbations and self-blended images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mfclip.config import PreprocessConfig
from mfclip.data import (
    PERTURBATIONS,
    AugmentConfig,
    PerturbedTransform,
    build_eval_transform,
    build_train_transform,
    parse_perturbations,
    self_blend,
)
from mfclip.data.transforms import to_chw


def photo(width: int = 300, height: int = 200, seed: int = 0) -> Image.Image:
    """A smooth random image (JPEG and blur change it measurably, unlike flat colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 10, width // 10, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.integers(-20, 20, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image).astype(int) + noise, 0, 255).astype(np.uint8))


def test_eval_transform_matches_clip_image_processor() -> None:
    transformers = pytest.importorskip("transformers")
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None)
    if processor_cls is None:
        pytest.skip("this transformers version has no PIL CLIP image processor")
    image = photo(301, 203)
    pre = PreprocessConfig()
    processor = processor_cls(
        size={"shortest_edge": pre.resize},
        crop_size={"height": pre.image_size, "width": pre.image_size},
        image_mean=pre.mean,
        image_std=pre.std,
    )
    expected = processor(images=image, return_tensors="np")["pixel_values"][0]
    got = build_eval_transform(pre)(image)
    assert got.dtype == torch.uint8 and got.shape == (3, 224, 224)
    # The model normalises inside: (x / 255 - mean) / std, as CLIP's processor does outside.
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    normalised = (got.float() / 255.0 - mean) / std
    assert np.abs(normalised.numpy() - expected).max() < 1e-5


def test_eval_transform_follows_preprocess_config() -> None:
    pre = PreprocessConfig(image_size=32, resize=40, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    image = Image.new("RGB", (80, 50), (255, 0, 0))
    out = build_eval_transform(pre)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert bool((out[0] == 255).all()) and bool((out[1:] == 0).all())


def test_eval_transform_is_the_model_geometry_in_channels_first_uint8() -> None:
    """The transform's tensor is exactly the shared geometry's crop, channels first."""
    from mfclip.preprocess.geometry import fit

    pre = PreprocessConfig()
    transform = build_eval_transform(pre)
    for image in (photo(301, 203, seed=1), photo(224, 224, seed=2), photo(150, 400, seed=3)):
        crop, _ = fit(image, pre)
        assert crop.dtype == np.uint8 and crop.shape == (224, 224, 3)
        assert torch.equal(transform(image), to_chw(crop))
        assert np.array_equal(transform.pixels(image), crop)


def test_train_transform_is_seeded_and_varies() -> None:
    transform = build_train_transform(PreprocessConfig(image_size=64, resize=64))
    image = photo()
    a = transform(image, rng=np.random.default_rng(1))
    b = transform(image, rng=np.random.default_rng(1))
    c = transform(image, rng=np.random.default_rng(2))
    assert a.shape == (3, 64, 64) and torch.equal(a, b) and not torch.equal(a, c)
    off = build_train_transform(
        PreprocessConfig(image_size=64, resize=64),
        AugmentConfig(flip_p=0, crop_p=0, jpeg_p=0, blur_p=0, color_p=0),
    )
    assert off.ops == []
    assert torch.equal(
        off(image), build_eval_transform(PreprocessConfig(image_size=64, resize=64))(image)
    )


def test_train_ops_do_what_their_names_say() -> None:
    from mfclip.data.augment import HorizontalFlip, JpegCompression, RandomResizedCrop

    image = photo(64, 64)
    rng = np.random.default_rng(0)
    flipped = HorizontalFlip(p=1.0)(image, rng)
    assert np.array_equal(np.asarray(flipped), np.asarray(image)[:, ::-1])
    assert RandomResizedCrop(32, scale=(0.2, 0.3))(image, rng).size == (32, 32)
    compressed = JpegCompression(p=1.0, quality=(10, 10))(image, rng)
    assert np.abs(np.asarray(compressed, int) - np.asarray(image, int)).mean() > 1


def test_rescale_jitter_resizes_within_its_range() -> None:
    from mfclip.data.augment import RandomRescale

    image, rng = photo(100, 80), np.random.default_rng(0)
    sizes = {RandomRescale(p=1.0, factor=(0.5, 1.5))(image, rng).size for _ in range(40)}
    assert len(sizes) > 10
    for w, h in sizes:
        assert 50 <= w <= 150 and 40 <= h <= 120 and abs(w / h - 1.25) < 0.05
    assert RandomRescale(p=0.0)(image, rng) is image
    names = [op.name for op in build_train_transform(augment=AugmentConfig(rescale_p=0.5)).ops]
    assert names[0] == "rescale"  # before blur and JPEG, as an image resized before sharing


def test_patch_shuffle_permutes_tiles() -> None:
    from mfclip.data.augment import PatchShuffle

    image, rng = photo(64, 64), np.random.default_rng(1)
    pixels = np.asarray(image)
    tiles = sorted(pixels[y : y + 32, x : x + 32].tobytes() for y in (0, 32) for x in (0, 32))
    changed = False
    for _ in range(5):
        out = np.asarray(PatchShuffle(p=1.0, grid=2)(image, rng))
        got = sorted(out[y : y + 32, x : x + 32].tobytes() for y in (0, 32) for x in (0, 32))
        assert got == tiles  # the same tiles, maybe elsewhere
        changed |= not np.array_equal(out, pixels)
    assert changed and PatchShuffle(p=0.0)(image, rng) is image


def test_perturbations_parse_and_apply() -> None:
    assert {"jpeg", "blur", "resize", "noise"} <= set(PERTURBATIONS)
    items = parse_perturbations("jpeg=30,50 blur=1;noise=5 resize=0.5", seed=3)
    assert [p.label for p in items] == ["jpeg=30", "jpeg=50", "blur=1", "noise=5", "resize=0.5"]
    image = photo(64, 48)
    original = np.asarray(image, dtype=float)
    for perturbation in items:
        out = perturbation(image)
        assert out.size == image.size and out.mode == "RGB"
        assert np.abs(np.asarray(out, float) - original).mean() > 0.5, perturbation.label
    # JPEG at quality 30 equals a plain PIL round trip.
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=30)
    assert np.array_equal(
        np.asarray(items[0](image)), np.asarray(Image.open(buffer).convert("RGB"))
    )
    # Stronger blur removes more detail.
    blur1, blur3 = PERTURBATIONS["blur"](1, 0)(image), PERTURBATIONS["blur"](3, 0)(image)
    assert np.asarray(blur3, float).std() < np.asarray(blur1, float).std()


def test_noise_is_seeded_by_seed_and_image_not_call_order() -> None:
    noise = PERTURBATIONS["noise"](8, 7)
    a, b = photo(seed=1), photo(seed=2)
    first = np.asarray(noise(a))
    noise(b)
    assert np.array_equal(first, np.asarray(noise(a)))
    assert not np.array_equal(first, np.asarray(PERTURBATIONS["noise"](8, 8)(a)))
    residual = np.asarray(noise(a), float) - np.asarray(a, float)
    assert 6 < residual.std() < 10


@pytest.mark.parametrize("spec", ["jpeg=0", "blur", "warp=2", "resize=1.5", "jpeg=high"])
def test_bad_perturbation_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_perturbations(spec)


def test_perturbed_transform_composes() -> None:
    pre = PreprocessConfig(image_size=32, resize=32)
    transform = PerturbedTransform(PERTURBATIONS["blur"](2, 0), build_eval_transform(pre))
    image = photo(64, 64)
    assert transform(image).shape == (3, 32, 32)
    assert not torch.equal(transform(image), build_eval_transform(pre)(image))


def test_self_blend_changes_only_the_face_region() -> None:
    pytest.importorskip("cv2")
    image = photo(128, 128)
    blended, mask = self_blend(image, np.random.default_rng(0), blend_ratios=(1.0,))
    assert blended.shape == (128, 128, 3) and blended.dtype == np.uint8
    assert mask.shape == (128, 128) and mask.min() >= 0 and mask.max() == pytest.approx(1.0)
    diff = np.abs(blended.astype(int) - np.asarray(image, int)).sum(axis=2)
    assert diff[mask > 0.9].mean() > 5  # inside the face: the altered source
    assert (diff[mask == 0] == 0).all()  # outside the mask: untouched
    assert mask[64, 64] > 0.9 and mask[0, 0] == 0  # centred on the face of a 1.3x crop
    again, _ = self_blend(image, np.random.default_rng(0), blend_ratios=(1.0,))
    assert np.array_equal(blended, again)


def test_self_blend_uses_landmark_hull() -> None:
    pytest.importorskip("cv2")
    image = photo(100, 100)
    landmarks = np.array([[10, 10], [40, 10], [40, 40], [10, 40]])
    _, mask = self_blend(image, np.random.default_rng(0), landmarks=landmarks)
    assert mask[:, 70:].max() == 0 and mask[25, 25] > 0
