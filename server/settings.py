"""All settings in one pydantic-settings class.

Precedence (highest first): command-line flags / constructor arguments, `MLX_AUDIO_*` environment
variables, the TOML file named by `config_file` (or `MLX_AUDIO_CONFIG_FILE`), then defaults.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or (
        "~/Library/Caches" if sys.platform == "darwin" else "~/.cache"
    )
    return (Path(base).expanduser() / "mlx-audio-server").absolute()


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ConfigFileError(ValueError):
    """The settings file named by `config_file` / `MLX_AUDIO_CONFIG_FILE` is missing or not TOML."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLX_AUDIO_", extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    config_file: Path | None = None
    preload: list[str] = Field(default_factory=list)
    idle_ttl: float = Field(600.0, ge=0, description="seconds before an idle model is unloaded; 0 = never")
    memory_budget_mb: float = Field(0.0, ge=0, description="resident model memory budget; 0 = unlimited")
    max_upload_mb: float = Field(25.0, gt=0)
    max_audio_seconds: float = Field(7200.0, gt=0)
    max_input_chars: int = Field(4096, gt=0)
    max_separation_upload_mb: float = Field(200.0, gt=0, description="upload limit of /v1/audio/separations")
    max_separation_seconds: float = Field(1200.0, gt=0, description="longest recording /separations takes")
    queue_depth: int = Field(64, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    models: list[dict[str, Any]] = Field(default_factory=list, description="extra ModelSpec tables")

    @field_validator("cache_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        # A launchd/systemd service may start in `/`: never keep a relative cache path.
        return v.expanduser().absolute()

    @field_validator("api_key")
    @classmethod
    def _empty_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        return v if v is not None and v.get_secret_value() else None

    @model_validator(mode="after")
    def _key_required_off_loopback(self) -> Settings:
        if not is_loopback(self.host) and self.api_key is None:
            raise ValueError(
                f"binding {self.host} exposes the server beyond this machine: set an API key "
                "(--api-key or MLX_AUDIO_API_KEY)"
            )
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_separation_upload_bytes(self) -> int:
        return int(self.max_separation_upload_mb * 1024 * 1024)

    @property
    def memory_budget_bytes(self) -> int:
        return int(self.memory_budget_mb * 1024 * 1024)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        toml_path = init_kwargs.get("config_file") or os.environ.get("MLX_AUDIO_CONFIG_FILE")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            path = Path(toml_path).expanduser()
            if not path.is_file():
                raise ConfigFileError(f"config file {path} does not exist")
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            except ValueError as exc:  # tomllib.TOMLDecodeError
                raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from None
        return tuple(sources)
