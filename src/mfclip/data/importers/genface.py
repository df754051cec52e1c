"""``genface`` layout: the authors' GenFace tree (reference section 6).

::

    real/{CelebA_HQ,FFHQ}/...
    fake/{EFS,FS,AM}/{Diffusion,GAN}/{generator}/...

Folders without a generator level fall back to the one generator GenFace has there
(``FS/Diffusion`` -> DiffFace, ``AM/Diffusion`` -> DiffAE, ``EFS/GAN`` -> StyleGAN3).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...prompts import DEFAULT_PROMPT_SPEC
from ..records import Record
from .base import ImportResult, find_dir, group_from_pattern, media_under, split_in

__all__ = ["import_genface"]

FORGERY_TYPES = {"efs": "entire_synthesis", "fs": "face_swap", "am": "attribute_edit"}
FAMILIES = {"diffusion": "diffusion", "gan": "gan"}
SINGLE_GENERATOR = {
    ("fs", "diffusion"): "DiffFace",
    ("am", "diffusion"): "DiffAE",
    ("efs", "gan"): "StyleGAN3",
}


def _locate(root: Path) -> Path:
    """The folder holding ``real/`` and ``fake/`` (``root`` itself or one level below)."""
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    for folder in candidates:
        if find_dir(folder, {"real"}) or find_dir(folder, {"fake"}):
            return folder
    raise ValueError(f"{root}: no GenFace layout found (expected real/ and fake/ folders)")


def import_genface(
    root: str | Path, group_pattern: str | None = None, videos: bool = False
) -> ImportResult:
    """Index a GenFace tree; each image is its own group unless ``group_pattern`` says more."""
    base = _locate(Path(root))
    result = ImportResult()
    real_dir, fake_dir = find_dir(base, {"real"}), find_dir(base, {"fake"})
    for name, folder in (("real", real_dir), ("fake", fake_dir)):
        if folder is None:
            result.warnings.append(f"no '{name}/' folder under {base}")
    if real_dir is not None:
        for file in media_under(real_dir, videos, result):
            rel = file.relative_to(real_dir)
            source = rel.parts[0] if len(rel.parts) > 1 else ""
            result.records.append(_record(file, base, "real", "", "", source, group_pattern))
    if fake_dir is not None:
        unknown: set[str] = set()
        for file in media_under(fake_dir, videos, result):
            parts = file.relative_to(fake_dir).parts[:-1]
            ftype = parts[0].lower() if parts else ""
            family = parts[1].lower() if len(parts) > 1 else ""
            generator = (
                parts[2]
                if len(parts) > 2
                else SINGLE_GENERATOR.get((ftype, family)) or _from_filename(file.stem, ftype)
            )
            if ftype not in FORGERY_TYPES or family not in FAMILIES or not generator:
                unknown.add("/".join(parts[:3]) or ".")
            result.records.append(
                _record(
                    file,
                    base,
                    "fake",
                    FORGERY_TYPES.get(ftype, ftype),
                    FAMILIES.get(family, family),
                    generator,
                    group_pattern,
                )
            )
        for folder in sorted(unknown):
            result.warnings.append(
                f"fake/{folder}: not of the form fake/{{EFS,FS,AM}}/{{Diffusion,GAN}}/GENERATOR"
            )
    result.official_splits = any(r.split for r in result.records)
    return result


def _from_filename(stem: str, ftype: str) -> str:
    """Generator named in a file name, as in the released GenFace tree.

    ``EFS/Diffusion`` holds ``colladiffusion_*``, ``ddpm_*``, ``latentdiffusion_*`` side by
    side (name first); ``FS/GAN`` holds ``*_FSLSD`` and ``*_FaceSwapper`` (name last). The
    released scripts parse the names the same way. Canonical spellings come from the prompt
    tables, so filters and L4 prompts agree.
    """
    if "_" not in stem:
        return ""
    token = stem.split("_")[0] if ftype == "efs" else stem.split("_")[-1]
    key = re.sub(r"[^a-z0-9]", "", token.lower())
    known = DEFAULT_PROMPT_SPEC["generator"]
    return known.get(key, "")


def _record(
    file: Path,
    base: Path,
    label: str,
    forgery_type: str,
    family: str,
    generator: str,
    group_pattern: str | None,
) -> Record:
    rel = file.relative_to(base)
    group = group_from_pattern(group_pattern, rel.as_posix()) or rel.with_suffix("").as_posix()
    return Record(
        path=str(file),
        label=label,
        forgery_type=forgery_type,
        family=family,
        generator=generator,
        split=split_in(rel.parts[:-1]),
        group=group,
    )
