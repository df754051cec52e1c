"""Importers on small on-disk trees: folders, GenFace, DiFF and DeepfakeBench JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mfclip.cli import main
from mfclip.data import group_leaks, index_dataset, read_manifest, resolve_path


def touch_images(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (len(rel) * 7 % 255, 0, 0)).save(path)


def by_name(records: list) -> dict:
    return {Path(r.path).name: r for r in records}


def by_stem(records: list) -> dict:
    return {Path(r.path).stem: r for r in records}


def test_folders_generators_groups_and_warnings(tmp_path: Path) -> None:
    touch_images(
        tmp_path,
        "real/FFHQ/001.png",
        "real/FFHQ/002.png",
        "fake/DDPM/x.png",
        "fake/DiffFace/vid7/f0.png",
        "fake/DiffFace/vid7/f1.png",
        "misc/readme.png",
    )
    (tmp_path / "fake" / "EmptyGen").mkdir()
    result = index_dataset(tmp_path, "folders")
    rows = by_name(result.records)
    assert len(rows) == 6 - 1 and "readme.png" not in rows
    assert rows["001.png"].label == "real" and rows["001.png"].generator == "FFHQ"
    assert (rows["x.png"].label, rows["x.png"].generator) == ("fake", "DDPM")
    assert (rows["x.png"].forgery_type, rows["x.png"].family) == ("entire_synthesis", "diffusion")
    assert rows["f0.png"].forgery_type == "face_swap"
    assert rows["f0.png"].group == rows["f1.png"].group == "fake/DiffFace/vid7"
    assert rows["001.png"].group != rows["002.png"].group
    assert all(r.split in ("train", "val", "test") for r in result.records)
    assert rows["f0.png"].split == rows["f1.png"].split and not group_leaks(result.records)
    text = "\n".join(result.warnings)
    assert "empty folder (no images): fake/EmptyGen/" in text
    assert "1 file(s) are not under a real/fake" in text


def test_folders_official_splits_and_generator_above_label(tmp_path: Path) -> None:
    touch_images(
        tmp_path,
        "train/progan/0_real/a.png",
        "train/progan/1_fake/b.png",
        "test/stylegan/1_fake/c.png",
    )
    rows = by_name(index_dataset(tmp_path, "folders").records)
    assert (rows["a.png"].split, rows["a.png"].label, rows["a.png"].generator) == (
        "train",
        "real",
        "progan",
    )
    assert (rows["c.png"].split, rows["c.png"].generator) == ("test", "stylegan")
    assert rows["b.png"].family == "gan"


def test_folders_group_pattern_and_overrides(tmp_path: Path) -> None:
    touch_images(
        tmp_path, "fake/000_003_0001.png", "fake/000_003_0002.png", "fake/004_009_0001.png"
    )
    result = index_dataset(
        tmp_path, "folders", group_pattern=r"(\d+_\d+)_\d+\.png$", forgery_type="FE", family="gan"
    )
    rows = by_name(result.records)
    assert rows["000_003_0001.png"].group == rows["000_003_0002.png"].group == "000_003"
    assert rows["004_009_0001.png"].group == "004_009"
    assert {(r.forgery_type, r.family) for r in result.records} == {("FE", "gan")}


def test_genface_layout(tmp_path: Path) -> None:
    base = tmp_path / "GenFace"
    touch_images(
        base,
        "real/CelebA_HQ/1.png",
        "real/FFHQ/2.png",
        "fake/EFS/Diffusion/DDPM/3.png",
        "fake/EFS/Diffusion/CollaborativeDiffusion/4.png",
        "fake/FS/Diffusion/5.png",
        "fake/AM/GAN/LatentTransformer/6.png",
        "fake/FS/GAN/FSLSD/7.png",
        "fake/XX/GAN/8.png",
    )
    result = index_dataset(tmp_path, "genface")  # the GenFace folder is found one level down
    rows = by_name(result.records)
    assert len(rows) == 8
    assert (rows["1.png"].label, rows["1.png"].generator) == ("real", "CelebA_HQ")
    assert (rows["3.png"].forgery_type, rows["3.png"].family, rows["3.png"].generator) == (
        "entire_synthesis",
        "diffusion",
        "DDPM",
    )
    assert rows["4.png"].generator == "CollaborativeDiffusion"
    assert (rows["5.png"].forgery_type, rows["5.png"].generator) == ("face_swap", "DiffFace")
    assert (rows["6.png"].forgery_type, rows["6.png"].family) == ("attribute_edit", "gan")
    assert (rows["7.png"].forgery_type, rows["7.png"].family, rows["7.png"].generator) == (
        "face_swap",
        "gan",
        "FSLSD",
    )
    assert any("fake/XX/GAN" in w for w in result.warnings)


def test_diff_layout_both_orders(tmp_path: Path) -> None:
    touch_images(
        tmp_path,
        "DiFF_real/train/id01/a.png",
        "DiFF_real/test/b.png",
        "train/T2I/Midjourney/id01/c.png",
        "test/FE/Imagic/d.png",
        "val/I2I/LoRA/e.png",
        "FS/DiffFace/train/f.png",
        "other/g.png",
    )
    result = index_dataset(tmp_path, "diff")
    rows = by_stem(result.records)
    assert set(rows) == set("abcdef")
    assert (rows["a"].label, rows["a"].split, rows["a"].group) == (
        "real",
        "train",
        "DiFF_real/train/id01",
    )
    assert (rows["c"].label, rows["c"].forgery_type, rows["c"].generator) == (
        "fake",
        "T2I",
        "Midjourney",
    )
    assert rows["c"].group == "train/T2I/Midjourney/id01" and rows["c"].family == "diffusion"
    assert (rows["d"].split, rows["d"].forgery_type, rows["d"].generator) == (
        "test",
        "FE",
        "Imagic",
    )
    assert (rows["e"].split, rows["e"].forgery_type) == ("val", "I2I")
    assert (rows["f"].split, rows["f"].forgery_type, rows["f"].generator) == (
        "train",
        "FS",
        "DiffFace",
    )
    assert any("1 file(s) are neither" in w for w in result.warnings)


def _deepfakebench_tree(root: Path) -> None:
    ff = "FaceForensics++"
    touch_images(
        root,
        f"{ff}/original_sequences/youtube/c23/frames/000/000.png",
        f"{ff}/original_sequences/youtube/c23/frames/000/001.png",
        f"{ff}/manipulated_sequences/Deepfakes/c23/frames/000_003/000.png",
        "Celeb-DF-v2/Celeb-synthesis/frames/id0_id1_0000/000.png",
    )
    real_frames = [
        f"{ff}/original_sequences/youtube/c23/frames/000/000.png",
        f"{ff}/original_sequences/youtube/c23/frames/000/001.png",
        f"{ff}/original_sequences/youtube/c23/frames/000/002.png",  # not on disk
    ]
    fake_frame = (
        f"/home/author/datasets/rgb/{ff}/manipulated_sequences/Deepfakes/c23/frames/000_003/000.png"
    )
    ff_json = {
        ff: {
            "FF-real": {
                "train": {
                    "c23": {"000": {"label": "FF-real", "frames": real_frames}},
                    "c40": {"000": {"label": "FF-real", "frames": ["nowhere.png"]}},
                }
            },
            "FF-DF": {"test": {"c23": {"000_003": {"label": "FF-DF", "frames": [fake_frame]}}}},
        }
    }
    celeb_json = {
        "Celeb-DF-v2": {
            "CelebDFv2_fake": {
                "test": {
                    "id0_id1_0000": {
                        "label": "CelebDFv2_fake",
                        "frames": ["Celeb-DF-v2/Celeb-synthesis/frames/id0_id1_0000/000.png"],
                    }
                }
            }
        }
    }
    (root / "dataset_json").mkdir()
    (root / "dataset_json" / "FaceForensics++.json").write_text(json.dumps(ff_json))
    (root / "dataset_json" / "Celeb-DF-v2.json").write_text(json.dumps(celeb_json))


def test_deepfakebench_json(tmp_path: Path) -> None:
    _deepfakebench_tree(tmp_path)
    result = index_dataset(tmp_path, "deepfakebench")
    records = result.records
    assert len(records) == 4
    real = [r for r in records if r.label == "real"]
    assert len(real) == 2 and {r.group for r in real} == {"FaceForensics++/FF-real/000"}
    assert {r.split for r in real} == {"train"} and real[0].extra["dataset"] == "FaceForensics++"
    fake = next(r for r in records if r.group.endswith("000_003"))
    assert (fake.generator, fake.forgery_type, fake.split) == ("Deepfakes", "face_swap", "test")
    assert Path(fake.path).is_file() and str(tmp_path) in fake.path  # author path re-rooted
    celeb = next(r for r in records if r.extra["dataset"] == "Celeb-DF-v2")
    assert (celeb.label, celeb.generator, celeb.split) == ("fake", "CelebDFv2", "test")
    missing = [w for w in result.warnings if "missing on disk" in w]
    assert len(missing) == 1 and missing[0].startswith("1 frame(s)") and "002.png" in missing[0]


def test_deepfakebench_explicit_json_and_compression(tmp_path: Path) -> None:
    _deepfakebench_tree(tmp_path)
    result = index_dataset(
        tmp_path,
        "deepfakebench",
        json_files=[tmp_path / "dataset_json" / "FaceForensics++.json"],
        compression="c40",
    )
    # c40 exists only for FF-real and names a file that is not there.
    assert any("missing on disk" in w and "nowhere.png" in w for w in result.warnings)
    # FF-DF has only c23: a single level is used without complaint.
    assert not any("no compression" in w for w in result.warnings)
    assert {r.generator for r in result.records} == {"Deepfakes"}


def test_index_cli_writes_manifest_and_prints_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "GenFace"
    touch_images(base, "real/FFHQ/1.png", "fake/EFS/Diffusion/DDPM/2.png")
    (base / "fake" / "AM").mkdir()
    out = tmp_path / "out" / "manifest.csv"
    assert main(["data", "index", str(base), "--layout", "genface", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split() == [
        "split",
        "label",
        "generator",
        "images",
        "groups",
    ]
    assert "DDPM" in captured.out and f"wrote 2 rows to {out}" in captured.out
    assert "warning: empty folder (no images): AM/" in captured.err
    records = read_manifest(out)
    assert {r.generator for r in records} == {"FFHQ", "DDPM"}
    assert all(resolve_path(r.path, out.parent).is_file() for r in records)
    assert main(["data", "index", str(tmp_path / "nothing"), "--out", str(out)]) == 1


def test_generator_versions_inherit_their_family():
    from mfclip.data.generators import describe_generator

    assert describe_generator("stable-diffusion-2.1") == ("entire_synthesis", "diffusion")
    assert describe_generator("StyleGAN3-R") == ("entire_synthesis", "gan")
    assert describe_generator("DDPM") == ("entire_synthesis", "diffusion")
    assert describe_generator("my-own-model") == ("", "")


def test_genface_released_flat_layout_names_generators_from_files(tmp_path: Path) -> None:
    """The released tree keeps several generators in one folder, named in the file names."""
    touch_images(
        tmp_path,
        "real/CelebA_HQ/1.png",
        "fake/EFS/Diffusion/colladiffusion_0001.png",
        "fake/EFS/Diffusion/ddpm_0002.png",
        "fake/EFS/Diffusion/latentdiffusion_0003.png",
        "fake/FS/GAN/0004_FSLSD.png",
        "fake/FS/GAN/0005_FaceSwapper.png",
    )
    rows = by_name(index_dataset(tmp_path, "genface").records)
    assert rows["colladiffusion_0001.png"].generator == "CollaborativeDiffusion"
    assert rows["ddpm_0002.png"].generator == "DDPM"
    assert rows["latentdiffusion_0003.png"].generator == "LatentDiffusion"
    assert (rows["0004_FSLSD.png"].generator, rows["0004_FSLSD.png"].family) == ("FSLSD", "gan")
    assert rows["0005_FaceSwapper.png"].generator == "FaceSwapper"
