"""The whole model on the tiny backbone: forward/backward, ablations, predict, save/load."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import mfclip
from mfclip import MFCLIP, CheckpointError
from mfclip.config import BackboneConfig
from mfclip.model.backbone import BackboneNotFoundError, load_backbone

from .conftest import random_batch


def test_forward_backward_reaches_every_component(tiny_model):
    model = tiny_model.train()
    images, labels, tokens = random_batch(model, batch=4)
    out = model(images, tokens)
    assert out.logits.shape == (4, 2)
    assert out.logits_per_image.shape == (4, 4) and out.boxes.shape == (4, 4)
    loss = model.loss(out, labels)
    assert all(torch.isfinite(v) for v in (loss.total, loss.cmc, loss.kd, loss.ce))
    loss.total.backward()
    for name, part in {
        "text": model.text.tower,
        "fusion": model.text.fusion,
        "vision": model.visual.global_encoder,
        "noise": model.visual.noise,
        "head": model.head,
        "predictor": model.predictor,
    }.items():
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert model.logit_scale.grad is not None


@pytest.mark.parametrize(
    "overrides",
    [
        ["noise.enabled=false"],
        ["spa.mode=off"],
        ["spa.mode=static"],
        ["loss.kd=0"],
        ["fle.levels=[1]"],
        ["fle.mode=concat"],
        ["fle.fusion=mlp"],
        ["fusion.mode=concat"],
        ["fusion.mode=gate"],
        ["noise.tokens=flatten"],
        ["noise.stride=56"],
        ["loss.cmc=0", "loss.kd=0"],
    ],
)
def test_ablations_train(overrides):
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny", overrides=overrides).train()
    images, labels, tokens = random_batch(model, batch=3)
    out = model(images, tokens)
    loss = model.loss(out, labels)
    loss.total.backward()
    assert torch.isfinite(loss.total)
    if "noise.enabled=false" in overrides:
        assert model.visual.noise is None and out.boxes is None
    if "loss.kd=0" in overrides:
        assert model.predictor is None
    if "loss.cmc=0" in overrides:
        assert model.text is None and out.logits_per_image is None


def test_predict_needs_no_text_and_is_batch_order_invariant(tiny_model):
    images, _, _ = random_batch(tiny_model, batch=6, seed=3)
    pred = tiny_model.predict(images)
    assert pred.fake_prob.shape == (6,) and ((pred.fake_prob >= 0) & (pred.fake_prob <= 1)).all()
    assert pred.boxes.shape == (6, 4)
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    pred_perm = tiny_model.predict(images[perm])
    assert torch.allclose(pred_perm.fake_prob, pred.fake_prob[perm], atol=1e-6)
    assert torch.equal(pred_perm.boxes, pred.boxes[perm])
    single = tiny_model.predict(images[2:3])
    assert torch.allclose(single.fake_prob, pred.fake_prob[2:3], atol=1e-6)


def test_predict_restores_training_mode(tiny_model):
    tiny_model.train()
    images, _, _ = random_batch(tiny_model, batch=2)
    tiny_model.predict(images)
    assert tiny_model.training


def test_save_load_roundtrip_is_identical(tiny_model, tmp_path):
    images, _, tokens = random_batch(tiny_model, batch=3, seed=1)
    tiny_model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
    } <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    loaded = MFCLIP.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        a, b = tiny_model(images, tokens), loaded(images, tokens)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.logits_per_image, b.logits_per_image)
    args = (["fake", "real"], ["face_swap", None], ["gan", None], ["FaceSwapper", None])
    assert torch.equal(loaded.build_prompts(*args), tiny_model.build_prompts(*args))
    assert loaded.config == tiny_model.config
    pre = json.loads((tmp_path / "m" / "preprocessor_config.json").read_text())
    assert pre["image_mean"] == tiny_model.config.preprocess.mean


def test_load_tolerates_ddp_prefix_and_position_ids(tiny_model, tmp_path):
    path = tiny_model.save_pretrained(tmp_path / "m")
    state = load_file(str(path / "model.safetensors"))
    state = {f"module.{k}": v for k, v in state.items()}
    state["module.text.tower.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    save_file(state, str(path / "model.safetensors"))
    # Weights written by other tooling: the folder carries no checksum of them.
    meta = json.loads((path / "config.json").read_text())
    del meta["weights_sha256"]
    (path / "config.json").write_text(json.dumps(meta))
    loaded = MFCLIP.from_pretrained(path).eval()
    images, _, _ = random_batch(tiny_model, batch=2)
    assert torch.equal(loaded.predict(images).fake_prob, tiny_model.predict(images).fake_prob)


def test_mismatched_architecture_is_refused(tiny_model, tmp_path):
    path = tiny_model.save_pretrained(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    meta["model"]["noise"]["enabled"] = False
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"does not match the architecture.*unexpected"):
        MFCLIP.from_pretrained(path)
    other = mfclip.create_model("mfclip-tiny", overrides=["noise.width=64"])
    with pytest.raises(CheckpointError, match="other shapes"):
        other.load_weights(tiny_model.state_dict())


def test_not_a_model_directory(tmp_path):
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        MFCLIP.from_pretrained(tmp_path)


def test_missing_backbone_gives_one_clear_error(tmp_path):
    with pytest.raises(
        BackboneNotFoundError,
        match=r"(?s)openai/clip-vit-base-patch16.*HF_HUB_OFFLINE.*backbone.name=tiny",
    ):
        load_backbone(BackboneConfig(name="openai/clip-vit-base-patch16"))
    with pytest.raises(BackboneNotFoundError, match=r"has no config\.json"):
        load_backbone(BackboneConfig(name=str(tmp_path)))


def test_tiny_backbone_loads_through_from_pretrained(tmp_path):
    backbone = load_backbone(BackboneConfig(name="tiny"))
    assert Path(backbone.source, "config.json").is_file()
    # A local directory with the same files is the path users take with real weights.
    again = load_backbone(BackboneConfig(name=backbone.source))
    for (k, v), (_, w) in zip(
        backbone.clip.state_dict().items(), again.clip.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k


def test_official_variant_builds_and_runs():
    torch.manual_seed(0)
    model = mfclip.create_model("official").eval()
    counts = model.param_counts()
    assert 141.0e6 < counts["total"] < 142.5e6  # released code: 141.66 M
    images, labels, tokens = random_batch(model, batch=2)
    with torch.no_grad():
        out = model(images, tokens)
    assert out.logits.shape == (2, 2) and torch.isfinite(model.loss(out, labels).total)


def test_no_cuda_calls_in_the_package():
    """Device placement follows the inputs: no ``.cuda()`` call anywhere in the code."""
    src = Path(mfclip.__file__).parent
    offenders = []
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "cuda"
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("variant", ["linear_probe", "clip_ft"])
def test_baseline_variants_are_image_only_ce(variant):
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny", overrides=[f"variant={variant}", "spa.mode=static"])
    assert model.text is None and model.visual.noise is None and model.predictor is None
    cfg = model.config
    assert (cfg.loss.cmc, cfg.loss.kd, cfg.loss.ce) == (0.0, 0.0, 1.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if variant == "linear_probe":  # frozen tower, no LayerNorm: one linear layer
        assert trainable == {"head.fc.weight", "head.fc.bias"}
    else:
        assert any(n.startswith("visual.global_encoder.") for n in trainable)
        assert "logit_scale" not in trainable
    images, labels, tokens = random_batch(model, batch=3)
    out = model(images, tokens)
    loss = model.loss(out, labels)
    loss.total.backward()
    assert out.logits_per_image is None and torch.isfinite(loss.total)


def test_lora_trains_adapters_only_and_reloads(tmp_path):
    pytest.importorskip("peft")
    torch.manual_seed(0)
    model = mfclip.create_model("mfclip-tiny", overrides=["lora.enabled=true", "lora.r=4"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    tower_params = [n for n in trainable if ".vision_model." in n or ".text_model." in n]
    assert tower_params and all(".lora_" in n for n in tower_params)
    images, labels, tokens = random_batch(model, batch=2)
    model.loss(model(images, tokens), labels).total.backward()
    loaded = MFCLIP.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert torch.equal(loaded.predict(images).fake_prob, model.predict(images).fake_prob)
