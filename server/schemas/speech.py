"""Wire types for POST /v1/audio/speech (JSON) and GET /v1/audio/voices, in OpenAI's field order."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)


class SpeechParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(min_length=1, max_length=256)
    input: str = Field(description="The text to speak (limit: the server's max_input_chars, 4096 by default)")
    voice: str | VoiceRef = Field(description="A voice id of the model, an OpenAI voice name, or {'id': ...}")
    instructions: str | None = Field(
        None, max_length=4096, validation_alias=AliasChoices("instructions", "instruct")
    )
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"

    @field_validator("voice", mode="before")
    @classmethod
    def _voice(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @property
    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class VoiceObject(BaseModel):
    id: str
    object: Literal["voice"] = "voice"
    name: str
    model: str
    language: str | None = None
    gender: Literal["female", "male"] | None = None


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoiceObject]
