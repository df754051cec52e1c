"""mfclip's data layer: manifests, importers, robust decoding, face crops, transforms, loader.

Light parts are imported eagerly; the parts that pull in ``torch`` or OpenCV load on first use
so that ``mfclip data index`` starts quickly.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from ..preprocess.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image, to_rgb
from .importers import IMPORTERS, ImportResult, index_dataset
from .manifest import ManifestError, read_manifest, resolve_path, write_manifest
from .records import COLUMNS, SPLITS, Record, normalize_label, normalize_split
from .splits import DEFAULT_RATIOS, assign_splits, group_leaks, split_of
from .summary import summarize

_LAZY = {
    "ManifestDataset": ".dataset",
    "BadItem": ".dataset",
    "collate": ".dataset",
    "BalancedSampler": ".sampler",
    "AugmentConfig": ".transforms",
    "EvalTransform": ".transforms",
    "TrainTransform": ".transforms",
    "build_eval_transform": ".transforms",
    "build_train_transform": ".transforms",
    "to_chw": ".transforms",
    "PERTURBATIONS": ".perturbations",
    "Perturbation": ".perturbations",
    "PerturbedTransform": ".perturbations",
    "parse_perturbations": ".perturbations",
    "SelfBlend": ".sbi",
    "self_blend": ".sbi",
    "check_records": ".check",
    "Problem": ".check",
    "FaceBox": ".faces",
    "FaceDetector": ".faces",
    "FaceOptions": ".faces",
    "build_detector": ".faces",
    "extract_faces": ".faces",
}

__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_RATIOS",
    "IMPORTERS",
    "SPLITS",
    "ImageDecodeError",
    "ImportResult",
    "ManifestError",
    "Record",
    "assign_splits",
    "group_leaks",
    "index_dataset",
    "load_image",
    "normalize_label",
    "normalize_split",
    "read_manifest",
    "resolve_path",
    "split_of",
    "summarize",
    "to_rgb",
    "write_manifest",
    *sorted(_LAZY),
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
