"""Auth for REST feeds: static bearer token, API key header, OAuth2 client credentials.

Credentials come only from settings.resolve() references and are held as SecretStr; they never
appear in a repr, a log line or an error message. ``renew`` names what a person renews when the
agency rejects them (the environment variable or Prefect Secret block).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from urllib.parse import urljoin

from pydantic import SecretStr

from connectors.config import (
    ApiKeyAuth,
    AuthConfig,
    BearerAuth,
    OAuth2ClientCredentialsAuth,
    reference_name,
)
from connectors.http import HttpClient, error_for_status
from fundx.core.errors import AuthError, DataError
from fundx.core.settings import resolve

log = logging.getLogger("fundx.connectors.auth")

#: fetch a new access token this many seconds before the agency says it expires
_EXPIRY_MARGIN = 30.0


class Auth(ABC):
    """Adds credentials to a feed's requests; may refresh them once when the agency answers 401."""

    #: what a person renews when the credentials are rejected
    renew: str = ""
    #: True if a 401 may be cured by fetching a new credential
    refreshable: bool = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} renew={self.renew}>"

    @abstractmethod
    def headers(self, http: HttpClient) -> dict[str, str]:
        """Headers that authenticate one request (may fetch a token)."""

    def refresh(self, http: HttpClient) -> None:  # noqa: B027 - a hook: nothing to forget by default
        """Forget the current credential so the next request gets a new one."""


class NoAuth(Auth):
    """A feed the agency serves without credentials."""

    renew = "the agency's credentials"

    def headers(self, http: HttpClient) -> dict[str, str]:
        return {}


class StaticHeaderAuth(Auth):
    """A fixed secret in a header: a bearer token or an API key."""

    def __init__(self, ref: str, *, header: str, prefix: str, feed: str, setting: str) -> None:
        self.ref, self.header, self.prefix, self.feed, self.setting = ref, header, prefix, feed, setting
        self.renew = reference_name(ref)

    def headers(self, http: HttpClient) -> dict[str, str]:
        # resolved per request: a renewed secret takes effect without a restart
        value = resolve(self.ref, setting=self.setting, feed=self.feed, secret=True)
        assert isinstance(value, SecretStr)
        return {self.header: self.prefix + value.get_secret_value()}


class OAuth2ClientCredentials(Auth):
    """An access token from the agency's token endpoint, cached until shortly before it expires."""

    refreshable = True

    def __init__(self, config: OAuth2ClientCredentialsAuth, *, base_url: str, feed: str) -> None:
        self.config, self.feed = config, feed
        self.token_url = urljoin(base_url.rstrip("/") + "/", config.token_url.lstrip("/")) if "://" not in config.token_url else config.token_url
        self.renew = reference_name(config.client_secret)
        self._token: SecretStr | None = None
        self._expires = 0.0

    def headers(self, http: HttpClient) -> dict[str, str]:
        if self._token is None or time.monotonic() >= self._expires:
            self._fetch(http)
        assert self._token is not None
        return {"Authorization": "Bearer " + self._token.get_secret_value()}

    def refresh(self, http: HttpClient) -> None:
        self._token = None

    def _fetch(self, http: HttpClient) -> None:
        client_id = resolve(self.config.client_id, setting="rest.auth.client_id", feed=self.feed, secret=True)
        secret = resolve(self.config.client_secret, setting="rest.auth.client_secret", feed=self.feed, secret=True)
        assert isinstance(client_id, SecretStr) and isinstance(secret, SecretStr)
        form = {"grant_type": "client_credentials"}
        if self.config.scope:
            form["scope"] = self.config.scope
        response = http.request(
            "POST", self.token_url, what="token request", data=form,
            basic=(client_id.get_secret_value(), secret.get_secret_value()),
        )
        error = error_for_status(response, feed=self.feed, what="token request", renew=self.renew)
        if error is not None:
            raise error
        body = response.json(feed=self.feed, what="token request")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise DataError("token request: the answer has no access_token", feed=self.feed)
        try:
            lifetime = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._token = SecretStr(token)
        self._expires = time.monotonic() + max(0.0, lifetime - _EXPIRY_MARGIN)
        log.info("%s: fetched an access token valid for %.0f s", self.feed, lifetime)


def auth_for(config: AuthConfig | None, *, base_url: str, feed: str) -> Auth:
    """The auth of one feed, from its config."""
    if config is None:
        return NoAuth()
    if isinstance(config, BearerAuth):
        return StaticHeaderAuth(config.token, header="Authorization", prefix="Bearer ", feed=feed, setting="rest.auth.token")
    if isinstance(config, ApiKeyAuth):
        return StaticHeaderAuth(config.key, header=config.header, prefix="", feed=feed, setting="rest.auth.key")
    return OAuth2ClientCredentials(config, base_url=base_url, feed=feed)


def rejected(error: AuthError, auth: Auth, *, feed: str, agency: str, refreshed: bool) -> AuthError:
    """The AuthError a person can act on: which credential to renew, after a refresh if there was one."""
    message = str(error)
    if message.startswith(f"{feed}: "):
        message = message[len(feed) + 2 :]
    if refreshed:
        message += " (still rejected after fetching a new token)"
    return AuthError(message, feed=feed, action=f"{agency} rejected the credentials: renew {auth.renew}")
