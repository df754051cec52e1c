"""What the field's generators are: forgery type and family for names found in layouts.

Importers fill ``forgery_type``/``family`` from this table when the layout does not say, so
prompt levels 2-3 are right without hand-written annotations. Unknown names stay empty (the
prompt builder then uses its generic wording).
"""

from __future__ import annotations

import re

__all__ = ["KNOWN_GENERATORS", "describe_generator"]

#: lower-case alphanumeric name -> (forgery_type, family)
KNOWN_GENERATORS: dict[str, tuple[str, str]] = {
    # GenFace
    "ddpm": ("entire_synthesis", "diffusion"),
    "latentdiffusion": ("entire_synthesis", "diffusion"),
    "ldm": ("entire_synthesis", "diffusion"),
    "collaborativediffusion": ("entire_synthesis", "diffusion"),
    "diffface": ("face_swap", "diffusion"),
    "diffae": ("attribute_edit", "diffusion"),
    "fslsd": ("face_swap", "gan"),
    "faceswapper": ("face_swap", "gan"),
    "stablediffusion": ("entire_synthesis", "diffusion"),
    "stylegan": ("entire_synthesis", "gan"),
    "stylegan2": ("entire_synthesis", "gan"),
    "stylegan3": ("entire_synthesis", "gan"),
    "progan": ("entire_synthesis", "gan"),
    "latenttransformer": ("attribute_edit", "gan"),
    "iafaces": ("attribute_edit", "gan"),
    "stargan": ("attribute_edit", "gan"),
    "starganv2": ("attribute_edit", "gan"),
    # FaceForensics++ and other video benchmarks
    "deepfakes": ("face_swap", "autoencoder"),
    "df": ("face_swap", "autoencoder"),
    "faceswap": ("face_swap", "graphics"),
    "fs": ("face_swap", "graphics"),
    "face2face": ("face_reenactment", "graphics"),
    "f2f": ("face_reenactment", "graphics"),
    "neuraltextures": ("face_reenactment", "neural_rendering"),
    "nt": ("face_reenactment", "neural_rendering"),
    "faceshifter": ("face_swap", "gan"),
    "fsh": ("face_swap", "gan"),
    "simswap": ("face_swap", "gan"),
    "blendface": ("face_swap", "gan"),
    "uniface": ("face_swap", "gan"),
    "e4s": ("face_swap", "gan"),
    "inswap": ("face_swap", "gan"),
    "mobileswap": ("face_swap", "gan"),
    "fomm": ("face_reenactment", "gan"),
    "facevid2vid": ("face_reenactment", "gan"),
    "wav2lip": ("face_reenactment", "gan"),
    "sbi": ("self_blended", "manual"),
    # DiFF methods (all diffusion)
    "midjourney": ("T2I", "diffusion"),
    "sdxl": ("T2I", "diffusion"),
    "sd21": ("T2I", "diffusion"),
    "freedomt": ("T2I", "diffusion"),
    "hps": ("T2I", "diffusion"),
    "lora": ("I2I", "diffusion"),
    "dreambooth": ("I2I", "diffusion"),
    "sdxlrefiner": ("I2I", "diffusion"),
    "freedomi": ("I2I", "diffusion"),
    "dcface": ("FS", "diffusion"),
    "imagic": ("FE", "diffusion"),
    "cyclediffusion": ("FE", "diffusion"),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def describe_generator(name: str) -> tuple[str, str]:
    """``(forgery_type, family)`` for a generator name, ``("", "")`` when unknown.

    An exact name wins; otherwise the longest known name that starts the key, so versions and
    variants (``stable-diffusion-2.1``, ``stylegan3-r``) inherit their family's description.
    """
    key = _key(name)
    if key in KNOWN_GENERATORS:
        return KNOWN_GENERATORS[key]
    prefixes = [k for k in KNOWN_GENERATORS if len(k) >= 4 and key.startswith(k)]
    return KNOWN_GENERATORS[max(prefixes, key=len)] if prefixes else ("", "")
