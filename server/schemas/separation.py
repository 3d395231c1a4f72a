"""Wire types for POST /v1/audio/separations (multipart; our extension, `../shared/docs/CONTRACT.md`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

StemFormat = Literal["wav", "flac", "mp3", "opus"]


class SeparationParams(BaseModel):
    """Every field but `file`. `stems` arrives as `stems[]` (the SDKs), repeated or comma-separated."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, min_length=1, max_length=256, description="a separation model; omitted: the default separator"
    )
    stems: list[str] = Field(
        default_factory=list, max_length=16, description="the stems to return (a subset of the model's); all"
    )
    response_format: StemFormat = Field("wav", description="the stems' audio format")
    output: Literal["zip", "json"] = Field(
        "zip", description="zip: one file per stem; json: {stems: {name: base64}, sample_rate, duration}"
    )
    shifts: int = Field(
        0, ge=0, le=10, description="random time shifts averaged (demucs' shift trick): better, n× slower"
    )
    overlap: float = Field(0.25, ge=0.0, le=0.9, description="fraction of a segment shared by neighbours")
