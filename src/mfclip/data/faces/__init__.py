"""Face detection and cropping (images and videos)."""

from .crop import FaceCrop, crop_face, largest_face, square_region
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
    "FaceCrop",
    "FaceDetector",
    "FaceOptions",
    "HaarFaceDetector",
    "VideoDecodeError",
    "YuNetFaceDetector",
    "build_detector",
    "crop_face",
    "extract_faces",
    "largest_face",
    "read_frames",
    "sample_indices",
    "square_region",
]
