from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    task: str
    capabilities: list[str]
    loaded: bool
    aliases: list[str]
    description: str = ""
    backend: str | None = Field(
        None, description="how the loaded model computes (e.g. cpu-f16-kernels); null until loaded"
    )
    backend_reason: str | None = Field(None, description="why that backend was chosen at load")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class LoadModelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256, description="A model id or alias")


class ModelDeleted(BaseModel):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = Field(description="true when the model was resident and has been unloaded")
