"""Wire types for /v1/audio/transcriptions and /v1/audio/translations (multipart), in OpenAI's order.

Multipart arrives in several dialects: the SDK sends arrays as `key[]` and objects as `key[sub]`; curl
users send a plain `key` (repeated, comma-separated, or a JSON string); booleans come as "true"/"false".
`parse_form` normalises all of them into one dict and validates it with the pydantic model below.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.errors import InvalidField, InvalidRequest

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]


class ServerVad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=10_000)
    silence_duration_ms: int = Field(500, ge=0, le=10_000)


class TranscriptionParams(BaseModel):
    """Every field but `file` (the upload is decoded separately, once)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    chunking_strategy: Literal["auto"] | ServerVad | None = None
    include: list[Literal["logprobs"]] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list, max_length=100)
    language: str | None = Field(None, min_length=2, max_length=3, description="ISO-639-1 code")
    languages: list[str] = Field(default_factory=list, max_length=100)
    prompt: str | None = Field(None, max_length=4096)
    response_format: ResponseFormat = "json"
    stream: bool = False
    temperature: float = Field(0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=list)

    @field_validator("language")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else None


class TranslationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    chunking_strategy: Literal["auto"] | ServerVad | None = None
    prompt: str | None = Field(None, max_length=4096)
    response_format: ResponseFormat = "json"
    temperature: float = Field(0.0, ge=0.0, le=1.0)


_ARRAYS = {"include", "keywords", "languages", "stems", "timestamp_granularities"}
_BRACKET = re.compile(r"^(?P<key>[A-Za-z_]+)\[(?P<sub>[A-Za-z_]*)\]$")


def _as_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = v.strip()
        if v.startswith("["):
            try:
                parsed = json.loads(v)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                out.extend(str(x) for x in parsed)
                continue
        out.extend(p.strip() for p in v.split(",") if p.strip())
    return out


def normalise_form(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Fold multipart text fields into plain values: arrays, objects, booleans, JSON strings."""
    multi: dict[str, list[str]] = {}
    objects: dict[str, dict[str, str]] = {}
    for raw_key, value in items:
        m = _BRACKET.match(raw_key)
        if m and m["sub"]:
            objects.setdefault(m["key"], {})[m["sub"]] = value
        else:
            multi.setdefault(m["key"] if m else raw_key, []).append(value)
    data: dict[str, Any] = {}
    for key, values in multi.items():
        if key in _ARRAYS:
            data[key] = _as_list(values)
        elif len(values) > 1:
            raise InvalidRequest(f"Parameter '{key}' was given {len(values)} times.", param=key)
        else:
            data[key] = values[0]
    if "stream" in data:
        s = str(data["stream"]).strip().lower()
        if s not in ("true", "false", "1", "0"):
            raise InvalidField("Invalid value for 'stream': expected true or false.", param="stream")
        data["stream"] = s in ("true", "1")
    for key, sub in objects.items():
        data[key] = sub
    cs = data.get("chunking_strategy")
    if isinstance(cs, str) and cs.strip().startswith("{"):
        try:
            data["chunking_strategy"] = json.loads(cs)
        except json.JSONDecodeError:
            raise InvalidField("'chunking_strategy' is not valid JSON.", param="chunking_strategy") from None
    return data


def validate_params(model_cls: type[BaseModel], data: dict[str, Any]) -> Any:
    """Validate into `model_cls`, turning pydantic errors into domain errors (all 400: missing, unknown or
    invalid_value)."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        param = loc[0] if loc else None
        if err["type"] == "missing":
            raise InvalidRequest(
                f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
            ) from None
        if err["type"] == "extra_forbidden":
            raise InvalidRequest(
                f"Unrecognized request argument supplied: '{param}'.", param=param, code="unknown_parameter"
            ) from None
        raise InvalidField(f"Invalid value for '{param}': {err['msg']}.", param=param) from None


def multipart_schema(params: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI `openapi_extra` for a multipart endpoint: the params (refs inlined) plus the `file` upload."""
    schema = params.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    schema = inline(schema)
    schema["properties"] = {"file": {"type": "string", "format": "binary"}, **schema["properties"]}
    schema["required"] = ["file", *schema.get("required", [])]
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}
