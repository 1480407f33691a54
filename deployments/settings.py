"""Settings of ``make serve`` (the Prefect server, the ``fundx`` work pool, its worker, the automations).

FUNDX_* environment variables, validated like the exchange's own (an error names the variable); their
defaults and meanings are listed in docs/reference/settings.md, generated from the Fields below.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fundx.core.errors import ConfigurationError


class ServeSettings(BaseSettings):
    """The settings of make serve: its Prefect server, the fundx work pool and the automations."""

    model_config = SettingsConfigDict(env_prefix="FUNDX_", extra="ignore", validate_default=True)

    serve_host: str = Field("127.0.0.1", min_length=1, description="where make serve's Prefect server listens (another "
                                                                   "address only on a trusted network, with an auth string)")
    serve_port: int = Field(4200, ge=1, le=65535, description="the Prefect server's port")
    serve_start_timeout: float = Field(90.0, gt=0, description="seconds for the server and worker to come up")
    work_pool_concurrency: int = Field(4, ge=1, description="flow runs of the fundx pool at once")
    night_budget_minutes: float = Field(
        120.0, ge=1 / 6, description="how long a night may run: past it the automation fundx: night over budget fires "
                                     "and the SLA monitor records night_slow")
    automation_webhook: str | None = Field(None, description="URL the automations call (POST, JSON)")

    @field_validator("automation_webhook")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.serve_host in ("0.0.0.0", "::") else self.serve_host  # noqa: S104 - compares, binds nothing
        return f"http://{host}:{self.serve_port}/api"


def serve_settings() -> ServeSettings:
    try:
        return ServeSettings()
    except Exception as exc:  # noqa: BLE001 - pydantic ValidationError: name the variable, never the value
        errors = getattr(exc, "errors", None)
        if not callable(errors):
            raise ConfigurationError(f"invalid settings: {type(exc).__name__}") from None
        parts = [f"FUNDX_{'_'.join(str(p) for p in e.get('loc', ())).upper()}: {e.get('msg', 'invalid')}"
                 for e in errors()]
        raise ConfigurationError("invalid settings: " + "; ".join(parts)) from None
