"""Noise branch: SRM filter against a reference convolution, noise encoder, the whole branch."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from mfclip.config import NoiseConfig
from mfclip.model.noise import (
    NoiseBranch,
    NoiseEncoder,
    NoiseOutput,
    SRMFilter,
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
# SRM filter
# --------------------------------------------------------------------------------------------

KB = np.array(
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
)
KV = np.array(
    [
        [-1, 2, -2, 2, -1],
        [2, -6, 8, -6, 2],
        [-2, 8, -12, 8, -2],
        [2, -6, 8, -6, 2],
        [-1, 2, -2, 2, -1],
    ]
)
HOR = np.zeros((5, 5))
HOR[2, 1:4] = [1, -2, 1]
REF_KERNELS = [KB / 4.0, KV / 12.0, HOR / 2.0]


def ref_srm(x: np.ndarray, clip: float) -> np.ndarray:
    """float64 numpy/scipy SRM: cross-correlation, zero padding 2, summed over RGB, clipped."""
    b, _, h, w = x.shape
    out = np.zeros((b, 3, h, w))
    for i in range(b):
        for o, k in enumerate(REF_KERNELS):
            for c in range(3):
                out[i, o] += scipy_signal.correlate2d(x[i, c], k, mode="same", boundary="fill")
    return np.clip(out, -clip, clip)


@pytest.mark.parametrize("clip", [3.0, 0.5])
def test_srm_matches_reference_convolution(clip):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 1.5, (2, 3, 21, 26))
    ref = ref_srm(x, clip)
    assert (np.abs(ref) == clip).mean() > 0.05 and (np.abs(ref) < clip).mean() > 0.05
    srm = SRMFilter(clip)
    out64 = srm(torch.from_numpy(x))
    assert out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), ref, rtol=0, atol=1e-12)
    out32 = srm(torch.from_numpy(x).float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), ref, rtol=0, atol=1e-5)


def test_srm_kernel_layout_and_not_in_state_dict():
    srm = SRMFilter()
    kernel = srm.kernel
    assert kernel.shape == (3, 3, 5, 5)
    for o, k in enumerate(REF_KERNELS):
        for c in range(3):
            np.testing.assert_allclose(kernel[o, c].double().numpy(), k, atol=1e-7)
    assert list(srm.parameters()) == []
    assert srm.state_dict() == {}
    srm.load_state_dict({})  # strict load of an empty dict works: nothing to carry
    assert srm(torch.zeros(1, 3, 8, 8)).abs().max() == 0


# --------------------------------------------------------------------------------------------
# Noise encoder and branch
# --------------------------------------------------------------------------------------------


def small_cfg(**kw) -> NoiseConfig:
    base = dict(width=32, depth=1, heads=2, mlp_ratio=2.0, stem_channels=[8, 16], grid=4)
    return dataclasses.replace(NoiseConfig(), **{**base, **kw})


def make(cls, cfg: NoiseConfig, out_dim: int = 24, seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(cfg, out_dim)


@pytest.mark.parametrize("tokens", ["grid", "flatten"])
@pytest.mark.parametrize("patch", [112, 64])
def test_noise_encoder_shapes_and_backward(tokens, patch):
    cfg = small_cfg(tokens=tokens, patch_size=patch)
    enc = make(NoiseEncoder, cfg)
    expected_in = 16 if tokens == "grid" else 16 * (patch // 4) ** 2
    assert enc.to_tokens.in_features == expected_in
    x = torch.randn(3, 3, patch, patch)
    out = enc(x)
    assert out.shape == (3, 24)
    out.square().mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert enc.proj.weight.grad.abs().sum() > 0
    assert enc.stem[0].weight.grad.abs().sum() > 0


def test_noise_encoder_released_flatten_size():
    """stem [32, 64] on 112 -> 64 x 28 x 28 flattened into one token, as released."""
    enc = make(NoiseEncoder, small_cfg(tokens="flatten", stem_channels=[32, 64]))
    assert enc.to_tokens.in_features == 64 * 28 * 28
    convs = [m for m in enc.stem if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in enc.stem if isinstance(m, torch.nn.MaxPool2d)]
    assert [c.out_channels for c in convs] == [32] * 3 + [64] * 3 and len(pools) == 2
    assert enc(torch.randn(1, 3, 112, 112)).shape == (1, 24)
    with pytest.raises(ValueError, match="112x112"):
        enc(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("tokens", ["grid", "flatten"])
def test_noise_encoder_output_independent_of_batch_position(tokens):
    enc = make(NoiseEncoder, small_cfg(tokens=tokens, patch_size=64)).eval()
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(1, 3, 64, 64, generator=gen)
    others = torch.randn(4, 3, 64, 64, generator=gen)
    with torch.no_grad():
        alone = enc(target)
        for pos in range(5):
            batch = torch.cat([others[:pos], target, others[pos:]])
            torch.testing.assert_close(enc(batch)[pos : pos + 1], alone, atol=1e-5, rtol=0)


def test_noise_encoder_rejects_bad_config():
    with pytest.raises(ValueError, match="tokens"):
        NoiseEncoder(small_cfg(tokens="bogus"), 8)
    with pytest.raises(ValueError, match="too small"):
        NoiseEncoder(small_cfg(tokens="flatten", patch_size=3), 8)


@pytest.mark.parametrize("select", ["argmin", "argmax"])
def test_noise_branch_end_to_end(select):
    cfg = small_cfg(patch_size=64, stride=48, select=select, srm_clip=2.0)
    branch = make(NoiseBranch, cfg, out_dim=16).eval()
    assert not any(k.startswith("srm") for k in branch.state_dict())
    imgs = torch.rand(3, 3, 160, 224, generator=torch.Generator().manual_seed(2))
    imgs[1, :, :, :112] = 0.5  # a flat half: argmin avoids it, argmax goes there
    with torch.no_grad():
        out = branch(imgs)
    assert isinstance(out, NoiseOutput)
    patches, boxes, index = select_richest_patch(imgs, 64, 48, select=select)
    assert out.embedding.shape == (3, 16)
    assert torch.equal(out.boxes, boxes) and torch.equal(out.index, index)
    torch.testing.assert_close(out.srm, SRMFilter(2.0)(patches), atol=0, rtol=0)
    assert out.srm.abs().max() <= 2.0
    x0 = int(out.boxes[1, 0])
    assert (x0 >= 112) if select == "argmin" else (x0 + 64 <= 112)
