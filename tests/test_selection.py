"""Richest-patch selection: batched, exact GLCM homogeneity against skimage; both kernels.

Longer than 450 lines because the skimage reference and the image generators above are shared
by every case below (one reference, not one per file).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfclip.model.noise import (
    glcm_homogeneity,
    patch_grid,
    quantize_gray,
    select_richest_patch,
)

skdata = pytest.importorskip("skimage.data")
skfeature = pytest.importorskip("skimage.feature")
scipy_signal = pytest.importorskip("scipy.signal")

THREADS = torch.get_num_threads()
# Reference homogeneities closer than this are a genuine tie: either index is accepted.
TIE_TOL = 1e-12
# Selection kernels to check: torch always, the fused CPU kernel where numba is installed.
AVAILABLE_KERNELS = ["torch"] + (["numba"] if importlib.util.find_spec("numba") else [])


# --------------------------------------------------------------------------------------------
# Reference implementation (the released code's per-image numpy/skimage path)
# --------------------------------------------------------------------------------------------


def ref_gray(img_hwc: np.ndarray) -> np.ndarray:
    """float32 ``(H, W, 3)`` -> uint8 grey exactly as the released code (float32, truncation)."""
    r, g, b = img_hwc[..., 0], img_hwc[..., 1], img_hwc[..., 2]
    gray = (r * 0.299 + g * 0.587 + b * 0.114) * 255
    assert gray.dtype == np.float32
    return np.clip(gray, 0, 255).astype(np.uint8)


def ref_homogeneities(gray: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
    out = []
    for x0, y0, x1, y1 in boxes:
        glcm = skfeature.graycomatrix(
            gray[y0:y1, x0:x1], [1], [0], levels=256, symmetric=True, normed=True
        )
        out.append(skfeature.graycoprops(glcm, "homogeneity")[0, 0])
    return np.asarray(out)


def check_against_skimage(
    imgs_hwc: np.ndarray, patch_size: int, stride: int | None
) -> tuple[np.ndarray, int]:
    """Run the batched torch path on float32 images and compare with skimage, image by image.

    Returns the reference homogeneities ``(N, P)`` and the number of genuine near-ties.
    """
    n, h, w, _ = imgs_hwc.shape
    images = torch.from_numpy(np.ascontiguousarray(imgs_hwc)).permute(0, 3, 1, 2)
    assert images.dtype == torch.float32
    boxes = patch_grid(h, w, patch_size, stride)
    gray = quantize_gray(images)
    homog = glcm_homogeneity(gray, boxes).numpy()
    assert homog.dtype == np.float64
    _, chosen, index = select_richest_patch(images, patch_size, stride, kernel="torch")
    for kernel in AVAILABLE_KERNELS[1:]:  # the fused kernel must agree bit for bit
        assert torch.equal(
            select_richest_patch(images, patch_size, stride, kernel=kernel)[2], index
        )
    box_list = boxes.tolist()
    refs, ties = [], 0
    for i in range(n):
        g_ref = ref_gray(imgs_hwc[i])
        np.testing.assert_array_equal(gray[i].numpy(), g_ref)
        ref = ref_homogeneities(g_ref, box_list)
        np.testing.assert_allclose(homog[i], ref, rtol=0, atol=1e-9)
        acceptable = np.flatnonzero(ref <= ref.min() + TIE_TOL)
        ties += len(acceptable) > 1
        assert int(index[i]) in acceptable, (i, int(index[i]), int(np.argmin(ref)), ref)
        assert chosen[i].tolist() == box_list[int(index[i])]
        refs.append(ref)
    return np.stack(refs), ties


# --------------------------------------------------------------------------------------------
# Test images
# --------------------------------------------------------------------------------------------


def synthetic_image(rng: np.random.Generator, kind: int, h: int = 224, w: int = 224) -> np.ndarray:
    """float32 ``(h, w, 3)`` in [0, 1] of one of several texture families."""
    if kind == 0:  # uniform noise
        img = rng.random((h, w, 3))
    elif kind == 1:  # smooth gradient + noise of random strength
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        a, b, c = rng.uniform(-1, 1, (3, 1, 1, 3))
        base = a * xx[..., None] + b * yy[..., None] + c
        img = base + rng.normal(0, rng.choice([0.0, 0.002, 0.01, 0.05]), (h, w, 3))
    elif kind == 2:  # noise with constant rectangles (sometimes whole quadrants)
        img = rng.random((h, w, 3)) * rng.uniform(0.05, 1.0)
        for _ in range(rng.integers(1, 5)):
            y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
            y1, x1 = rng.integers(y0 + 8, h + 1), rng.integers(x0 + 8, w + 1)
            img[y0:y1, x0:x1] = rng.random(3)
        if rng.random() < 0.5:
            qy, qx = rng.integers(0, 2, 2) * (h // 2)
            img[qy : qy + h // 2, qx : qx + w // 2] = rng.random(3)
    elif kind == 3:  # random blocky image (nearest upsampling)
        s = int(rng.choice([2, 4, 7, 8, 16, 28, 56]))
        small = rng.random((-(-h // s), -(-w // s), 3))
        img = small.repeat(s, 0).repeat(s, 1)[:h, :w]
    elif kind == 4:  # exact k/255 levels: grey lands on or next to integers (truncation edge)
        img = rng.integers(0, 256, (h, w, 3)) / 255.0
    elif kind == 5:  # low-contrast noise: candidates with very close homogeneities
        img = 0.5 + rng.integers(-2, 3, (h, w, 1)) / 255.0 + rng.normal(0, 1e-3, (h, w, 3))
    else:  # kind 6: a single tile repeated: all candidates identical -> exact tie, index 0
        tile = rng.random((-(-h // 2), -(-w // 2), 3)) * rng.uniform(0, 1)
        img = np.tile(tile, (2, 2, 1))[:h, :w]
    return np.clip(img, 0, 1).astype(np.float32)


_SOURCES = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "page",
    "text",
    "clock",
    "grass",
    "gravel",
    "brick",
    "cat",
    "colorwheel",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "logo",
    "checkerboard",
]


def load_natural_sources() -> list[np.ndarray]:
    """skimage.data images (bundled, offline) as float32 RGB in [0, 1], plus LFW faces."""
    out = []
    for name in _SOURCES:
        try:
            img = getattr(skdata, name)()
        except Exception:  # pragma: no cover - depends on the installed skimage
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        out.append((img[..., :3].astype(np.float32) / 255.0).astype(np.float32))
    try:
        faces = skdata.lfw_subset()[:20]  # (N, 25, 25) float in [0, 1]
        out += [np.stack([f] * 3, axis=-1).astype(np.float32) for f in faces]
    except Exception:  # pragma: no cover
        pass
    assert len(out) >= 5
    return out


@pytest.fixture(scope="module")
def natural_sources() -> list[np.ndarray]:
    return load_natural_sources()


def natural_image(rng: np.random.Generator, sources: list[np.ndarray], size: int = 224):
    """A random 224x224 crop, or a random region resized to 224x224, of a natural image."""
    src = sources[int(rng.integers(len(sources)))]
    h, w, _ = src.shape
    if h >= size and w >= size and rng.random() < 0.5:
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        img = src[y : y + size, x : x + size]
    else:
        side = int(rng.integers(max(8, min(h, w) // 4), min(h, w) + 1))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        region = torch.from_numpy(np.ascontiguousarray(src[y : y + side, x : x + side]))
        mode = "bicubic" if rng.random() < 0.5 else "bilinear"
        img = F.interpolate(
            region.permute(2, 0, 1)[None], size=(size, size), mode=mode, antialias=side > size
        )[0].permute(1, 2, 0)
        img = img.clamp(0, 1).numpy()
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Richest patch = skimage reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", range(16))
def test_selection_matches_skimage_1024_images(batch, natural_sources):
    """16 x 64 = 1024 images (half synthetic families, half natural crops/resizes)."""
    rng = np.random.default_rng(1000 + batch)
    synth = [synthetic_image(rng, kind=i % 7) for i in range(32)]
    natural = [natural_image(rng, natural_sources) for _ in range(32)]
    imgs = np.stack(synth + natural)
    order = rng.permutation(len(imgs))
    imgs = imgs[order]
    refs, _ = check_against_skimage(imgs, patch_size=112, stride=None)
    assert refs.shape == (64, 4)
    # Tiled images: four identical candidates tie exactly, in skimage too; the first one wins.
    _, _, index = select_richest_patch(torch.from_numpy(imgs).permute(0, 3, 1, 2))
    for pos in np.flatnonzero(order % 7 == 6):
        if order[pos] < 32:
            assert np.all(refs[pos] == refs[pos][0])
            assert int(index[pos]) == 0


def test_selection_matches_skimage_overlapping_stride(natural_sources):
    """Patch 64, stride 32 on 224 -> 36 overlapping candidates, ~100 images."""
    rng = np.random.default_rng(7)
    imgs = np.stack(
        [synthetic_image(rng, kind=i % 7) for i in range(50)]
        + [natural_image(rng, natural_sources) for _ in range(50)]
    )
    assert patch_grid(224, 224, 64, 32).shape == (36, 4)
    refs, _ = check_against_skimage(imgs, patch_size=64, stride=32)
    assert refs.shape == (100, 36)


@pytest.mark.parametrize(
    ("h", "w", "ps", "stride", "n_cand"),
    [(160, 288, 64, 48, 15), (200, 300, 112, None, 2), (301, 150, 50, 37, 7 * 3)],
)
def test_selection_matches_skimage_non_square(h, w, ps, stride, n_cand, natural_sources):
    rng = np.random.default_rng(h * w)
    imgs = []
    for i in range(16):
        if i % 2:
            imgs.append(synthetic_image(rng, kind=i % 7, h=h, w=w))
        else:
            big = natural_image(rng, natural_sources, size=max(h, w))
            imgs.append(big[:h, :w])
    assert patch_grid(h, w, ps, stride).shape == (n_cand, 4)
    check_against_skimage(np.stack(imgs), patch_size=ps, stride=stride)


# --------------------------------------------------------------------------------------------
# Grey quantisation, candidate grid, homogeneity edge cases
# --------------------------------------------------------------------------------------------


def test_quantize_gray_matches_numpy_truncation():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 256, (4, 3, 17, 19)) / 255.0
    noisy = rng.random((4, 3, 17, 19))
    outside = rng.uniform(-0.5, 1.5, (4, 3, 17, 19))
    imgs = np.concatenate([levels, noisy, outside]).astype(np.float32)
    got = quantize_gray(torch.from_numpy(imgs))
    assert got.dtype == torch.uint8 and got.shape == (12, 17, 19)
    ref = np.stack([ref_gray(im.transpose(1, 2, 0)) for im in imgs])
    np.testing.assert_array_equal(got.numpy(), ref)
    # Out-of-range values saturate; float64 input is quantised from its float32 value.
    assert got[8:].min() == 0 and got[8:].max() == 255
    np.testing.assert_array_equal(quantize_gray(torch.from_numpy(imgs).double()).numpy(), ref)


def test_quantize_gray_custom_luma():
    img = torch.rand(2, 3, 8, 8)
    assert torch.equal(quantize_gray(img, (1.0, 0.0, 0.0)), (img[:, 0] * 255).to(torch.uint8))


def test_patch_grid_is_row_major_like_unfold():
    boxes = patch_grid(224, 224, 64, 32)
    assert boxes.dtype == torch.long and boxes.shape == (36, 4)
    # unfold over y then x enumerates top-left corners y-major; label pixels with their index.
    idx = torch.arange(224 * 224).view(224, 224)
    corners = idx.unfold(0, 64, 32).unfold(1, 64, 32)[..., 0, 0].reshape(-1)
    assert torch.equal(boxes[:, 1] * 224 + boxes[:, 0], corners)
    assert torch.equal(boxes[:, 2:] - boxes[:, :2], torch.full((36, 2), 64))
    assert patch_grid(224, 224, 112).tolist() == [
        [0, 0, 112, 112],
        [112, 0, 224, 112],
        [0, 112, 112, 224],
        [112, 112, 224, 224],
    ]


@pytest.mark.parametrize(("h", "w"), [(100, 224), (224, 100), (50, 50)])
def test_patch_larger_than_image_raises(h, w):
    with pytest.raises(ValueError, match="larger than the image"):
        patch_grid(h, w, 112, 112)
    with pytest.raises(ValueError, match="larger than the image"):
        select_richest_patch(torch.rand(1, 3, h, w), 112)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="positive"):
        patch_grid(224, 224, 112, 0)
    with pytest.raises(ValueError, match="select"):
        select_richest_patch(torch.rand(1, 3, 224, 224), select="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        select_richest_patch(torch.rand(3, 224, 224))
    with pytest.raises(TypeError, match="integer"):
        glcm_homogeneity(torch.rand(1, 8, 8), [[0, 0, 4, 4]])
    with pytest.raises(ValueError, match="2 pixels wide"):
        glcm_homogeneity(torch.zeros(1, 8, 8, dtype=torch.uint8), [[0, 0, 1, 4]])
    with pytest.raises(ValueError, match="inside"):
        glcm_homogeneity(torch.zeros(1, 8, 8, dtype=torch.uint8), [[0, 0, 9, 4]])


def test_homogeneity_constant_and_known_values():
    gray = torch.zeros(1, 4, 6, dtype=torch.uint8)
    gray[0, :, 3:] = 2  # |diff| = 2 at the column boundary 2 -> 3 of every row
    h = glcm_homogeneity(gray, [[0, 0, 3, 4], [0, 0, 6, 4], [2, 1, 4, 3]])
    # Constant window: exactly 1. Full image: per row 4 pairs of weight 1 and one of 1/5.
    assert h[0, 0].item() == 1.0
    assert h[0, 1].item() == pytest.approx((4 + 0.2) / 5, abs=1e-14)
    assert h[0, 2].item() == pytest.approx(0.2, abs=1e-14)


def test_ties_resolve_to_first_index():
    rng = np.random.default_rng(3)
    tile = torch.from_numpy(rng.random((3, 112, 112), dtype=np.float32))
    smooth = torch.full((3, 112, 112), 0.25)
    img = torch.zeros(1, 3, 224, 224)
    # Candidates 1 and 2 are the same rich tile, 0 and 3 are constant (both homogeneity 1).
    img[0, :, :112, :112] = smooth
    img[0, :, :112, 112:] = tile
    img[0, :, 112:, :112] = tile
    img[0, :, 112:, 112:] = smooth * 2
    _, _, index = select_richest_patch(img)
    assert index.tolist() == [1]
    _, _, index = select_richest_patch(img, select="argmax")
    assert index.tolist() == [0]
    _, _, index = select_richest_patch(torch.full((2, 3, 224, 224), 0.5))
    assert index.tolist() == [0, 0]


# --------------------------------------------------------------------------------------------
# select_richest_patch behaviour
# --------------------------------------------------------------------------------------------


def test_select_returns_the_box_crop_and_is_batch_order_invariant():
    rng = np.random.default_rng(11)
    imgs = torch.from_numpy(np.stack([synthetic_image(rng, k % 6) for k in range(12)]))
    imgs = imgs.permute(0, 3, 1, 2).contiguous()
    patches, boxes, index = select_richest_patch(imgs, 64, 40)
    grid = patch_grid(224, 224, 64, 40)
    assert patches.shape == (12, 3, 64, 64) and boxes.dtype == torch.long
    assert index.dtype == torch.long and index.shape == (12,)
    assert torch.equal(boxes, grid[index])
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        assert torch.equal(patches[i], imgs[i, :, y0:y1, x0:x1])
    assert len(set(index.tolist())) > 1  # the test images do not all pick the same candidate
    perm = torch.from_numpy(rng.permutation(12))
    p2, b2, i2 = select_richest_patch(imgs[perm], 64, 40)
    assert torch.equal(p2, patches[perm])
    assert torch.equal(b2, boxes[perm])
    assert torch.equal(i2, index[perm])


def test_select_argmax_and_argmin_follow_homogeneity():
    rng = np.random.default_rng(12)
    imgs = torch.from_numpy(np.stack([synthetic_image(rng, k % 4) for k in range(16)]))
    imgs = imgs.permute(0, 3, 1, 2).contiguous()
    h = glcm_homogeneity(quantize_gray(imgs), patch_grid(224, 224, 112))
    _, _, lo = select_richest_patch(imgs)
    _, _, hi = select_richest_patch(imgs, select="argmax")
    assert torch.equal(lo, h.argmin(1))
    assert torch.equal(hi, h.argmax(1))
    assert not torch.equal(lo, hi)


def test_crop_is_differentiable_wrt_images():
    imgs = torch.rand(3, 3, 96, 96, requires_grad=True)
    patches, boxes, _ = select_richest_patch(imgs, 48)
    patches.sum().backward()
    expected = torch.zeros(3, 3, 96, 96)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        expected[i, :, y0:y1, x0:x1] = 1
    assert torch.equal(imgs.grad, expected)


# --------------------------------------------------------------------------------------------
# The fused CPU kernel (numba) against the torch path
# --------------------------------------------------------------------------------------------


def _boundary_images(rng: np.random.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """Pixels on and next to grey-level boundaries, out of range, flat areas, exact ties."""
    levels = rng.integers(0, 256, (n, 3, h, w)).astype(np.float32) / np.float32(255)
    ulps = rng.integers(-2, 3, (n, 3, h, w)).astype(np.float32)
    x = np.nextafter(levels, levels + np.sign(ulps)) * (ulps != 0) + levels * (ulps == 0)
    x[0] = rng.random((3, h, w)) * 1.4 - 0.2  # outside [0, 1]: clamped
    x[1, :, :, : w // 2] = 0.5  # a flat half
    x[2] = np.tile(x[2, :, : h // 2 + 1], (1, 2, 1))[:, :h]  # repeated rows: ties
    x[3] = _decisive_image(h, w)
    return torch.from_numpy(x.astype(np.float32))


def _decisive_image(h: int, w: int) -> np.ndarray:
    """Flat grey, with a checkerboard in the bottom-right quarter of a grey value whose float32
    level is one below its exact level, and of that exact level: float32 arithmetic (the
    reference's) sees texture there; any other arithmetic sees a flat image (index 0)."""
    luma = np.asarray([0.299, 0.587, 0.114], np.float32)
    for level in range(1, 256):
        v = np.float32(level) / np.float32(255)
        if int(((v * luma[0] + v * luma[1]) + v * luma[2]) * np.float32(255)) == level - 1:
            break
    img = np.full((3, h, w), 0.5, np.float32)
    yy, xx = np.mgrid[h // 2 : h, w // 2 : w]
    img[:, h // 2 :, w // 2 :] = np.where((yy + xx) % 2, v, np.float32((level + 0.5) / 255))
    return img


@pytest.mark.skipif("numba" not in AVAILABLE_KERNELS, reason="numba is not installed")
@pytest.mark.parametrize(
    ("h", "w", "patch", "stride"), [(224, 224, 112, None), (100, 150, 32, 7), (64, 48, 48, 1)]
)
@pytest.mark.parametrize("select", ["argmin", "argmax"])
def test_numba_kernel_is_bit_identical_to_torch(h, w, patch, stride, select):
    imgs = _boundary_images(np.random.default_rng(h + w + patch), 12, h, w)
    want = select_richest_patch(imgs, patch, stride, select=select, kernel="torch")
    for threads in (1, 3):
        torch.set_num_threads(threads)
        try:
            got = select_richest_patch(imgs, patch, stride, select=select, kernel="numba")
        finally:
            torch.set_num_threads(max(1, THREADS))
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
    got = select_richest_patch(imgs[:0], patch, stride, kernel="numba")
    assert got[0].shape == (0, 3, patch, patch) and got[2].shape == (0,)


@pytest.mark.skipif("numba" not in AVAILABLE_KERNELS, reason="numba is not installed")
def test_kernel_choice_and_errors(monkeypatch):
    from mfclip.model import selection as noise

    cpu = torch.device("cpu")
    assert noise._resolve_kernel("auto", cpu) == "numba"
    monkeypatch.setenv(noise.KERNEL_ENV, "torch")
    assert noise._resolve_kernel("auto", cpu) == "torch"
    assert noise._resolve_kernel("numba", cpu) == "numba"  # an explicit choice wins
    monkeypatch.setenv(noise.KERNEL_ENV, "fastest")
    with pytest.raises(ValueError, match="'auto', 'torch' or 'numba'"):
        noise._resolve_kernel("auto", cpu)
    with pytest.raises(ValueError, match="runs on the CPU"):
        noise._resolve_kernel("numba", torch.device("meta"))
    monkeypatch.delenv(noise.KERNEL_ENV)
    monkeypatch.setattr(noise.torch.jit, "is_tracing", lambda: True)
    assert noise._resolve_kernel("auto", cpu) == "torch"  # export traces torch operations


@pytest.mark.parametrize("kernel", AVAILABLE_KERNELS)
def test_patches_stay_differentiable_with_every_kernel(kernel):
    imgs = torch.rand(3, 3, 96, 96, generator=torch.Generator().manual_seed(5))
    imgs.requires_grad_()
    patches, boxes, _ = select_richest_patch(imgs, 48, kernel=kernel)
    patches.sum().backward()
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        inside = torch.zeros(96, 96, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.all(imgs.grad[i][:, inside] == 1) and torch.all(imgs.grad[i][:, ~inside] == 0)
    doubled = select_richest_patch(imgs.detach().double(), 48, kernel=kernel)[0]
    assert doubled.dtype == torch.float64  # the input's dtype is kept
