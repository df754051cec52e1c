"""Face detection and cropping (images and videos)."""

from .crop import crop_face, square_region
from .detector import (
    DETECTORS,
    FaceBox,
    FaceDetector,
    HaarFaceDetector,
    YuNetFaceDetector,
    build_detector,
)
from .extract import FaceOptions, extract_faces
from .video import VideoDecodeError, read_frames, sample_indices

__all__ = [
    "DETECTORS",
    "FaceBox",
    "FaceDetector",
    "FaceOptions",
    "HaarFaceDetector",
    "VideoDecodeError",
    "YuNetFaceDetector",
    "build_detector",
    "crop_face",
    "extract_faces",
    "read_frames",
    "sample_indices",
    "square_region",
]
