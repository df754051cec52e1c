"""ManifestDataset, collate, balanced and distributed sampling, bad-file handling."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from mfclip.config import PreprocessConfig
from mfclip.data import (
    BadItem,
    BalancedSampler,
    ManifestDataset,
    Record,
    SelfBlend,
    build_eval_transform,
    build_train_transform,
    collate,
    write_manifest,
)
from mfclip.prompts import PromptBuilder

PRE = PreprocessConfig(image_size=32, resize=32)


@pytest.fixture(scope="module")
def tokenizer():
    from mfclip.model.backbone import build_prompt_tokenizer

    return build_prompt_tokenizer()


def make_dataset_dir(root: Path, n_real: int = 3, n_fake: int = 3, broken: int = 2) -> Path:
    rows = []
    for i in range(n_real):
        path = root / "real" / f"r{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), (i * 20, 100, 100)).save(path)
        rows.append(Record(str(path), "real", generator="FFHQ", split="train", group=f"r{i}"))
    for i in range(n_fake):
        path = root / "fake" / f"f{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 40), (200, i * 20, 10)).save(path)
        rows.append(
            Record(str(path), "fake", "entire_synthesis", "diffusion", "DDPM", "train", f"v{i % 2}")
        )
    for i in range(broken):
        path = root / "fake" / f"broken{i}.png"
        path.write_bytes(b"" if i % 2 == 0 else b"GIF89a not really")
        rows.append(Record(str(path), "fake", generator="DDPM", split="train", group=f"b{i}"))
    rows.append(Record(str(root / "real" / "t.png"), "real", split="test", group="t"))
    Image.new("RGB", (40, 40)).save(root / "real" / "t.png")
    return write_manifest(rows, root / "manifest.csv")


def test_items_have_the_agreed_keys_and_shapes(tmp_path: Path, tokenizer) -> None:
    manifest = make_dataset_dir(tmp_path, broken=0)
    dataset = ManifestDataset(
        manifest, build_eval_transform(PRE), tokenizer=tokenizer, levels=(1, 2, 3, 4), split="train"
    )
    assert len(dataset) == 6 and dataset.labels == [0, 0, 0, 1, 1, 1]
    item = dataset[3]
    keys = "image label tokens prompt_ids group path generator forgery_type index"
    assert set(item) == set(keys.split())
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
    assert item["label"] == 1 and item["index"] == 3 and item["group"] == "v0"
    assert item["generator"] == "DDPM" and item["forgery_type"] == "entire_synthesis"
    assert Path(item["path"]).is_file()
    assert item["prompt_ids"].dtype == torch.long and item["prompt_ids"].shape == (4,)
    assert item["tokens"].dtype == torch.long and item["tokens"].shape == (4, 77)
    texts = [dataset.prompt_table[i] for i in item["prompt_ids"]]
    assert texts == PromptBuilder().build("fake", "entire_synthesis", "diffusion", "DDPM")
    for row, text in zip(item["tokens"], texts, strict=True):
        assert tokenizer.decode(row, skip_special_tokens=True).strip() == text.lower()
    real = dataset[0]
    assert len(set(real["prompt_ids"].tolist())) == 1
    assert dataset.prompt_table[real["prompt_ids"][0]] == "a photo of a real face"
    assert "tokens" not in ManifestDataset(manifest, split="train")[0]


def test_levels_prompt_column_and_split_filter(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    rows = [
        Record(str(image), "fake", generator="X", split="val", prompt="a custom description"),
        Record(str(image), "fake", "face_swap", "gan", "FSLSD", split="test"),
    ]
    manifest = write_manifest(rows, tmp_path / "m.jsonl")
    dataset = ManifestDataset(manifest, levels=(1, 2), split=["val", "test"])
    assert [dataset.prompt_table[i] for i in dataset[0]["prompt_ids"]] == [
        "a custom description"
    ] * 2
    assert [dataset.prompt_table[i] for i in dataset[1]["prompt_ids"]] == [
        "a photo of a fake face",
        "a photo of an identity swapped face",
    ]
    assert len(ManifestDataset(manifest, split="test")) == 1
    with pytest.raises(ValueError, match="no usable rows"):
        ManifestDataset(manifest, split="train")


def test_relative_paths_resolve_against_manifest_or_root(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("path,label\n../imgs/a.png,real\n")
    assert ManifestDataset(manifest)[0]["label"] == 0
    other = tmp_path / "m2.csv"
    other.write_text("path,label\na.png,fake\n")
    assert ManifestDataset(other, root=tmp_path / "imgs")[0]["label"] == 1


def test_bad_files_are_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = make_dataset_dir(tmp_path)
    dataset = ManifestDataset(manifest, build_eval_transform(PRE), split="train")
    with caplog.at_level(logging.WARNING, logger="mfclip.data.dataset"):
        items = [dataset[i] for i in range(len(dataset))]
    bad = [i for i in items if isinstance(i, BadItem)]
    assert len(bad) == 2 and dataset.bad_count == 2
    assert "broken0.png" in caplog.text and "empty file" in caplog.text
    batch = collate(items)
    assert batch is not None and batch["image"].shape == (6, 3, 32, 32)
    assert batch["label"].tolist() == [0, 0, 0, 1, 1, 1] and isinstance(batch["path"], list)
    assert sorted(Path(p).name for p in batch["skipped"]) == ["broken0.png", "broken1.png"]
    assert collate(bad) is None


def test_dataloader_with_workers_never_crashes_on_bad_files(tmp_path: Path) -> None:
    manifest = make_dataset_dir(tmp_path, n_real=4, n_fake=4, broken=3)
    dataset = ManifestDataset(manifest, build_train_transform(PRE), split="train", seed=0)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate)
    seen = []
    for batch in loader:
        if batch is not None:
            assert batch["image"].shape[1:] == (3, 32, 32)
            seen += batch["index"].tolist()
    assert sorted(seen) == list(range(8))
    assert dataset.bad_count == 3  # counted across both worker processes


def test_seeded_augmentation_per_index_and_epoch(tmp_path: Path) -> None:
    manifest = make_dataset_dir(tmp_path, broken=0)
    dataset = ManifestDataset(manifest, build_train_transform(PRE), split="train", seed=5)
    first = dataset[4]["image"]
    assert torch.equal(first, dataset[4]["image"])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[4]["image"])


def test_self_blended_pseudo_fakes_from_reals(tmp_path: Path, tokenizer) -> None:
    pytest.importorskip("cv2")
    manifest = make_dataset_dir(tmp_path, n_real=3, n_fake=0, broken=0)
    dataset = ManifestDataset(
        manifest,
        build_eval_transform(PRE),
        tokenizer=tokenizer,
        split="train",
        seed=0,
        self_blend=SelfBlend(p=1.0),
    )
    item = dataset[0]
    assert (item["label"], item["generator"], item["forgery_type"]) == (1, "sbi", "self_blended")
    texts = [dataset.prompt_table[i] for i in item["prompt_ids"]]
    assert texts == PromptBuilder().build("fake", "self_blended", "manual", "sbi")
    assert torch.equal(item["tokens"], dataset.prompt_tokens[item["prompt_ids"]])
    plain = ManifestDataset(manifest, build_eval_transform(PRE), split="train")[0]
    assert plain["label"] == 0 and not torch.equal(plain["image"], item["image"])


def test_balanced_sampler_balances_and_shards() -> None:
    labels = [0] * 10 + [1] * 90
    sampler = BalancedSampler(labels, num_samples=2000, seed=1)
    counts = Counter(labels[i] for i in sampler)
    assert len(sampler) == 2000 and abs(counts[0] - counts[1]) < 200
    ranks = [list(BalancedSampler(labels, num_replicas=2, rank=r, seed=1)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 50
    whole = list(BalancedSampler(labels, num_samples=100, seed=1))
    assert whole[0::2] == ranks[0] and whole[1::2] == ranks[1]
    sampler.set_epoch(1)
    assert list(sampler) != list(BalancedSampler(labels, num_samples=2000, seed=1))
    with pytest.raises(ValueError):
        BalancedSampler(labels, num_replicas=2, rank=2)


def test_works_with_distributed_sampler(tmp_path: Path) -> None:
    manifest = make_dataset_dir(tmp_path, broken=0)
    dataset = ManifestDataset(manifest, build_eval_transform(PRE), split="train")
    indices = []
    for rank in range(2):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate)
        indices.append([i for batch in loader for i in batch["index"].tolist()])
    assert sorted(indices[0] + indices[1]) == list(range(6))
    assert np.intersect1d(indices[0], indices[1]).size == 0
