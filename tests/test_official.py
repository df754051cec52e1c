"""The released MFCLIP global image branch (VGG stem + transformer) with the batch-position fix."""

from __future__ import annotations

import pytest
import torch

from mfclip.model.official import (
    RELEASED_STAGES,
    OfficialGlobalEncoder,
    VGGStem,
    count_parameters,
)

# Small, fast configuration: 2 stages on 32x32 images -> 16 x 8 x 8 stem map.
SMALL_STAGES = [(8, 1), (16, 1)]
SMALL = dict(dim=64, image_size=32, depth=1, heads=4, mlp_dim=128, stages=SMALL_STAGES)


def _small(tokens: str = "flatten", **kw) -> OfficialGlobalEncoder:
    torch.manual_seed(0)
    return OfficialGlobalEncoder(**{**SMALL, **kw}, tokens=tokens)


def test_released_stages_constant():
    assert RELEASED_STAGES == ((32, 3), (64, 3), (128, 3), (256, 4), (512, 4))


def test_vgg_stem_released_layout():
    stem = VGGStem()
    convs = [m for m in stem.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in stem.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    pools = [m for m in stem.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) == 3 + 3 + 3 + 4 + 4 == len(bns)
    assert len(pools) == 5
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs] == [32] * 3 + [64] * 3 + [128] * 3 + [256] * 4 + [
        512
    ] * 4
    assert stem.out_channels == 512 and stem.reduction == 32


def test_vgg_stem_shapes_small_and_full():
    stem = VGGStem(SMALL_STAGES).eval()
    assert stem(torch.randn(2, 3, 32, 32)).shape == (2, 16, 8, 8)
    full = VGGStem().eval()
    with torch.no_grad():
        assert full(torch.randn(1, 3, 224, 224)).shape == (1, 512, 7, 7)


@pytest.mark.parametrize("tokens,num_tokens,token_dim", [("flatten", 1, 16 * 64), ("grid", 64, 16)])
def test_forward_shapes(tokens, num_tokens, token_dim):
    enc = _small(tokens).eval()
    assert enc.grid_size == 8
    assert enc.num_tokens == num_tokens and enc.token_dim == token_dim
    assert enc.to_embedding.in_features == token_dim
    assert enc.transformer.pos_embedding.shape == (1, num_tokens + 1, 64)
    out = enc(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 64) and enc.out_dim == 64
    assert torch.isfinite(out).all()


def test_full_size_forward_shape():
    # Released stem and token layout at 224; a small transformer keeps it quick.
    torch.manual_seed(0)
    enc = OfficialGlobalEncoder(dim=64, depth=1, heads=4, mlp_dim=128).eval()
    assert enc.grid_size == 7 and enc.token_dim == 25088 and enc.num_tokens == 1
    with torch.no_grad():
        assert enc(torch.randn(2, 3, 224, 224)).shape == (2, 64)


def test_flatten_order_is_channels_last():
    """Flatten mode uses the release's ``b c (h p1) (w p2) -> b (h w) (p1 p2 c)`` order."""
    enc = _small("flatten")
    fmap = torch.randn(2, 16, 8, 8)
    tok = enc.tokenize(fmap)
    assert tok.shape == (2, 1, 16 * 64)
    b, c, i, j = 1, 5, 3, 6
    assert tok[b, 0, (i * 8 + j) * 16 + c] == fmap[b, c, i, j]
    grid = _small("grid").tokenize(fmap)
    assert grid.shape == (2, 64, 16)
    assert torch.equal(grid[b, i * 8 + j], fmap[b, :, i, j])


@pytest.mark.parametrize("tokens", ["flatten", "grid"])
def test_backward_gives_grads(tokens):
    enc = _small(tokens).train()
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    enc(x).pow(2).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert enc.transformer.pos_embedding.grad.abs().sum() > 0
    assert enc.stem.features[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("tokens", ["flatten", "grid"])
def test_batch_position_independence(tokens):
    """Defect 4 fixed: an image's output does not depend on its slot or the batch size."""
    enc = _small(tokens).eval()
    torch.manual_seed(1)
    batch = torch.randn(30, 3, 32, 32)
    with torch.no_grad():
        alone = torch.cat([enc(batch[k : k + 1]) for k in range(5)])  # batch size 1
        together = enc(batch[:5])
        torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
        # The same image at every position of a batch of 5.
        img = batch[0]
        for pos in range(5):
            others = batch[1:5].clone()
            placed = torch.cat([others[:pos], img[None], others[pos:]])
            torch.testing.assert_close(enc(placed)[pos], alone[0], atol=1e-5, rtol=0)
        # Batch size 30 > 24 (the release crashes there) and the last slot matches.
        big = enc(batch)
        assert big.shape == (30, 64)
        torch.testing.assert_close(big[:5], alone, atol=1e-5, rtol=0)
        torch.testing.assert_close(big[29:], enc(batch[29:]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("image_size", [30, 2, 0, 18, -4])
def test_bad_image_size_raises(image_size):
    with pytest.raises(ValueError, match="multiple of 2\\*\\*num_stages"):
        OfficialGlobalEncoder(**{**SMALL, "image_size": image_size})


def test_released_stages_need_multiple_of_32():
    with pytest.raises(ValueError, match="= 32"):
        OfficialGlobalEncoder(image_size=200, dim=64, depth=1, heads=4, mlp_dim=128)


def test_wrong_input_shape_raises():
    enc = _small().eval()
    with pytest.raises(ValueError, match="32x32"):
        enc(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="pixel_values"):
        enc(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="pixel_values"):
        enc(torch.randn(3, 32, 32))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="tokens"):
        OfficialGlobalEncoder(**SMALL, tokens="patches")
    with pytest.raises(ValueError, match="divisible by heads"):
        OfficialGlobalEncoder(**{**SMALL, "heads": 5})
    with pytest.raises(ValueError, match="stages"):
        VGGStem([])
    with pytest.raises(ValueError, match="stage channels"):
        VGGStem([(8, 0)])


def test_count_parameters_small():
    lin = torch.nn.Linear(10, 3)
    assert count_parameters(lin) == 33
    lin.bias.requires_grad_(False)
    assert count_parameters(lin) == 33
    assert count_parameters(lin, trainable_only=True) == 30
    # BatchNorm running statistics are buffers, not parameters.
    assert count_parameters(torch.nn.BatchNorm2d(7)) == 14


def _released_size_by_hand() -> int:
    """Parameter count of the released-size encoder, written out from the layer sizes."""
    # VGG stem: each conv is 3*3*cin*cout weights + cout bias; each BN has weight + bias.
    conv_bn = []  # (cin, cout) of every conv
    conv_bn += [(3, 32), (32, 32), (32, 32)]
    conv_bn += [(32, 64), (64, 64), (64, 64)]
    conv_bn += [(64, 128), (128, 128), (128, 128)]
    conv_bn += [(128, 256), (256, 256), (256, 256), (256, 256)]
    conv_bn += [(256, 512), (512, 512), (512, 512), (512, 512)]
    stem = sum(9 * cin * cout + cout + 2 * cout for cin, cout in conv_bn)
    assert stem == 10_813_248

    d, mlp, depth = 512, 2048, 6
    token_dim = 512 * 7 * 7  # the whole 7x7x512 map as one token
    assert token_dim == 25088
    embed = token_dim * d + d  # Linear(25088, 512)
    attn = (3 * d * d + 3 * d) + (d * d + d)  # in_proj (with bias) + out_proj
    ffn = (d * mlp + mlp) + (mlp * d + d)  # Linear(d, mlp) + Linear(mlp, d)
    norms = 2 * (2 * d)  # two pre-norm LayerNorms
    layer = attn + ffn + norms
    assert layer == 3_152_384
    cls = d
    pos = (1 + 1) * d  # per TOKEN position: class token + one image token
    final_norm = 2 * d
    return stem + embed + depth * layer + cls + pos + final_norm


def test_released_size_parameter_count():
    enc = OfficialGlobalEncoder(dim=512, image_size=224, depth=6, heads=8, mlp_dim=2048)
    expected = _released_size_by_hand()
    assert expected == 42_575_680
    assert count_parameters(enc) == expected
    assert count_parameters(enc.stem) == 10_813_248
    assert count_parameters(enc.to_embedding) == 25088 * 512 + 512
    assert enc.transformer.pos_embedding.shape == (1, 2, 512)
