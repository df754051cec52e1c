"""The service's response models: what ``/docs`` and ``/openapi.json`` describe to clients."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DetectResult", "ErrorBody", "ModelInfo", "OperatingPointInfo"]


class DetectResult(BaseModel):
    """One result row, as ``mfclip detect`` writes it, plus the optional explanation."""

    model_config = ConfigDict(extra="allow")

    source: str = Field(description="the upload's base file name (display only)")
    kind: str = Field("image", description="always 'image' here")
    frame: int | None = None
    frames: int | None = None
    fake_prob: float | None = Field(
        description="probability that the image is forged, 0..1, calibrated when the model is "
        "(GET /v1/model: operating_point.calibration); the verdict is decided on this number"
    )
    raw_prob: float | None = Field(
        None, description="the model's uncalibrated p(fake), for reference only"
    )
    label: Literal["real", "fake", "uncertain"] | None = Field(
        description="'fake' when fake_prob reaches the threshold, else 'real'; 'uncertain' "
        "inside the model's uncertain band (a person should look); null with an error"
    )
    threshold: float = Field(description="the model's stored decision threshold")
    reason: str | None = Field(
        None,
        description="the verdict in plain words: the rule behind it, what that rule measured "
        "when it was fitted and, when a probability seems to contradict the label, why",
    )
    face_box: list[int] | None = Field(None, description="x0, y0, x1, y1 (face mode only)")
    patch_box: list[int] | None = Field(None, description="richest noise patch x0, y0, x1, y1")
    error: str | None = None
    explanation_png: str | None = Field(
        None, description="base64 PNG panel, only with explain=true"
    )
    explanation_error: str | None = Field(None, description="why the panel is missing")


class OperatingPointInfo(BaseModel):
    """How the served model turns a probability into a verdict (``mfclip.OperatingPoint``)."""

    model_config = ConfigDict(extra="allow")

    threshold: float = Field(description="p(fake) at or above which an image is 'fake'")
    rule: str = Field(description="the rule that chose the threshold, e.g. 'fpr=0.01'")
    fpr: float | None = Field(None, description="false positive rate of the rule when fitted")
    tpr: float | None = Field(None, description="true positive rate of the rule when fitted")
    fitted_on: str | None = Field(None, description="the data the rule was fitted on")
    band: list[float] | None = Field(
        None, description="[lo, hi]: probabilities strictly inside are 'uncertain'"
    )
    calibration: str = Field("none", description="calibration method of fake_prob")
    summary: str | None = Field(None, description="how verdicts are decided, in one sentence")


class ModelInfo(BaseModel):
    """What ``GET /v1/model`` reports; other fields of ``Detector.info()`` pass through."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    mfclip_version: str | None = None
    threshold: float | None = None
    threshold_rule: str | None = None
    operating_point: OperatingPointInfo | None = None
    serving: dict[str, Any] = Field(
        description="this server's limits: upload, pixels, batching, queue, rate, timeout, auth"
    )


class ErrorBody(BaseModel):
    """FastAPI's error shape: a message, or a list of validation problems."""

    detail: Any
