"""The console's settings, from FUNDX_CONSOLE_* variables: the cookie key, session limits, rows per page
and the sign-in throttle (docs/reference/settings.md lists them)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """The console's settings; each field is the environment variable FUNDX_CONSOLE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_CONSOLE_", extra="ignore")

    secret: SecretStr | None = Field(None, description="key that signs the cookies; default: a random key "
                                                       "kept in FUNDX_HOME/console/cookie.key (0600)")
    session_hours: float = Field(8.0, gt=0, le=168, description="a session ends this long after sign-in")
    idle_minutes: float = Field(30.0, gt=0, le=1440, description="a session ends after this long unused")
    rows_per_page: int = Field(100, ge=10, le=1000, description="quarantined rows on one page")
    login_attempts: int = Field(20, ge=1, le=10_000,
                                description="sign-in attempts one client address may make per login_window_seconds "
                                            "(then 429 with Retry-After); a successful sign-in does not count")
    login_window_seconds: float = Field(900.0, gt=0, le=86_400, description="the window of login_attempts")
    login_addresses: int = Field(10_000, ge=1, le=1_000_000,
                                 description="client addresses the sign-in throttle remembers (bounds its memory; "
                                             "the least recently seen is forgotten first)")
