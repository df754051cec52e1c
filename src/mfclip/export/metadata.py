"""The contract of an exported graph: tensor names, metadata keys, preprocessing (no torch).

Shared by the torch writer (:mod:`mfclip.export.writer`) and the torch-free runtime
(:mod:`mfclip.export.runtime`), so the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

__all__ = [
    "BOXES_NAME",
    "FORMAT",
    "INPUT_NAME",
    "LEGACY_FORMAT",
    "PROB_NAME",
    "OnnxPreprocess",
    "read_metadata",
]

#: Version of the graph contract written into the metadata. Version 2 takes uint8 pixels and
#: normalises inside the graph, as the PyTorch model does.
FORMAT = "mfclip-onnx/2"
#: Graphs of mfclip 0.1 took CLIP-normalised float32 input; the runtime still runs them.
LEGACY_FORMAT = "mfclip-onnx/1"
INPUT_NAME = "images"
PROB_NAME = "fake_prob"
BOXES_NAME = "boxes"
INSTALL_HINT = "install the ONNX extra: pip install 'mfclip[onnx]'"


@dataclass(frozen=True)
class OnnxPreprocess:
    """What the graph expects: the same fields as ``mfclip.config.PreprocessConfig``."""

    image_size: int = 224
    resize: int = 224
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    interpolation: str = "bicubic"

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> OnnxPreprocess:
        """Parse the preprocessing keys that the writer stored."""
        keys = ("image_size", "resize", "mean", "std", "interpolation")
        missing = [k for k in keys if k not in meta]
        if missing:
            raise ValueError(
                f"the ONNX model lacks the metadata {missing}: was it written by mfclip export?"
            )
        return cls(
            image_size=int(meta["image_size"]),
            resize=int(meta["resize"]),
            mean=tuple(float(v) for v in json.loads(meta["mean"])),
            std=tuple(float(v) for v in json.loads(meta["std"])),
            interpolation=meta["interpolation"],
        )


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of an exported model (``onnx`` if installed, else ONNX Runtime)."""
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
