"""Pixels before the model, without torch: decoding and the model-input geometry.

The one implementation of both, shared by training, evaluation, detection, the service and the
torch-free ONNX runtime (numpy and Pillow only).
"""

from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, load_image, to_rgb
from .geometry import Placement, center_crop, fit, resize_shortest

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "Placement",
    "center_crop",
    "decode_image",
    "fit",
    "load_image",
    "resize_shortest",
    "to_rgb",
]
