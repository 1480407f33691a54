"""What the checks of one feed work with: its config and contract, the endpoint's environment, settings and window."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pandas as pd

from connectors import build_connector, load_feed
from connectors.base import Connector, Pull
from connectors.config import ApiKeyAuth, BearerAuth, FeedConfig, OAuth2ClientCredentialsAuth
from contracts import Contract, load_contract
from fundx.core.errors import FundxError
from fundx.core.settings import Settings, get_settings, resolve
from fundx.core.timeutil import SHANGHAI, Window
from onboarding.conformance.fault_control import FaultControl, SandboxFaults
from onboarding.conformance.probing import environment, url_password


@dataclass
class Context:
    """What the checks of one feed work with: config, contract, endpoint environment, settings, window."""

    feed: str
    config: FeedConfig
    contract: Contract
    settings: Settings
    window: Window
    #: environment variables set while a check runs (the sandbox's endpoints and credentials)
    env: dict[str, str] = field(default_factory=dict)
    #: the sandbox's fault profiles, when the feed's agency is a sandbox agency
    faults: FaultControl | None = None
    #: the rows the agency serves for a window (the sandbox's ground truth), when known
    expected: Callable[[datetime, datetime], pd.DataFrame] | None = None
    #: the day dates may not be after, for the contract check (default: today)
    today: date | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def for_feed(
        cls,
        feed: str,
        *,
        settings: Settings | None = None,
        env: Mapping[str, str] | None = None,
        faults: FaultControl | None = None,
        expected: Callable[[datetime, datetime], pd.DataFrame] | None = None,
        window: Window | None = None,
        today: date | None = None,
    ) -> Context:
        """The context of a configured feed (ConfigurationError for an unknown or broken config)."""
        config = load_feed(feed)
        settings = settings or get_settings()
        if window is None:
            end = datetime.now(SHANGHAI).replace(microsecond=0)
            window = Window(min(settings.initial_watermark, end), end)
        return cls(feed, config, load_contract(config.contract), settings, window, dict(env or {}), faults,
                   expected, today)

    @classmethod
    def for_sandbox(cls, feed: str, sandbox: Any, *, settings: Settings | None = None, **kw: Any) -> Context:
        """The context of a feed served by an in-process sandbox: its env, faults and ground truth."""

        def expected(start: datetime, end: datetime) -> pd.DataFrame:
            return sandbox.expected(feed, start, end)

        return cls.for_feed(feed, settings=settings, env=sandbox.env, faults=SandboxFaults(sandbox),
                            expected=expected, **kw)

    # -- helpers the checks share

    @property
    def transport(self) -> str:
        return self.config.transport

    @property
    def agency(self) -> str:
        return self.config.agency

    def connector(self, config: FeedConfig | None = None, settings: Settings | None = None) -> Connector:
        """A fresh connector for the feed (or for a changed copy of its config)."""
        return build_connector(config or self.config, settings or self.settings)

    def settings_with(self, **changes: Any) -> Settings:
        return self.settings.model_copy(update=changes)

    def full_pull(self) -> Pull:
        """The whole window, pulled once per context (the checks compare against it)."""
        if "full" not in self._cache:
            self._cache["full"] = self.connector().extract(self.window)
        return self._cache["full"]

    def fault_control(self) -> FaultControl | None:
        """The fault control for this feed's agency, when it is a sandbox agency."""
        if self.faults is None:
            return None
        try:
            return self.faults if self.agency in self.faults.agencies() else None
        except Exception:  # noqa: BLE001 - a control server that went away: no fault control
            return None

    def secret_values(self) -> dict[str, str]:
        """The feed's configured secrets (resolved now) by what they are; no value shorter than 8 characters."""
        refs: dict[str, str] = {}
        if self.config.rest is not None and self.config.rest.auth is not None:
            auth = self.config.rest.auth
            if isinstance(auth, BearerAuth):
                refs["rest.auth.token"] = auth.token
            elif isinstance(auth, ApiKeyAuth):
                refs["rest.auth.key"] = auth.key
            elif isinstance(auth, OAuth2ClientCredentialsAuth):
                refs["rest.auth.client_secret"] = auth.client_secret
        if self.config.database is not None:
            refs["database.url"] = self.config.database.url
        values: dict[str, str] = {}
        for setting, ref in refs.items():
            try:
                value = resolve(ref, setting=setting, feed=self.feed, secret=True).get_secret_value()
            except FundxError:
                continue
            if setting == "database.url":
                password = url_password(value)
                if password:
                    values["the password in database.url"] = password
                if "://" in value and "@" in value:
                    values["database.url"] = value
                continue
            values[setting] = value
        return {k: v for k, v in values.items() if len(v) >= 8}

    @contextlib.contextmanager
    def applied(self, extra: Mapping[str, str] | None = None) -> Iterator[None]:
        """The context's environment (and ``extra``) in os.environ while a check runs."""
        with environment({**self.env, **(extra or {})}):
            yield
