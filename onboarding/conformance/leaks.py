"""The check (f) secrets: no credential, token or probe secret in DEBUG log lines or errors, even after a wrong one."""

from __future__ import annotations

import secrets as _secrets

from connectors.config import ApiKeyAuth, BearerAuth, FeedConfig, OAuth2ClientCredentialsAuth
from onboarding.conformance.context import Context
from onboarding.conformance.probing import (
    PROBE_SECRET_ENV,
    PROBE_URL_ENV,
    LogCapture,
    attempt,
    capture_logs,
    closed_port,
    environment,
    plural,
    with_section,
)
from onboarding.conformance.results import CheckFailed, CheckSkipped


def _probe_config(ctx: Context) -> tuple[FeedConfig, dict[str, str], str, str] | None:
    """The config with one credential replaced by a wrong probe value: (config, env, what, value)."""
    value = "conformance-probe-" + _secrets.token_hex(12)
    config = ctx.config
    if config.rest is not None:
        auth = config.rest.auth
        ref = f"env:{PROBE_SECRET_ENV}"
        new: BearerAuth | ApiKeyAuth | OAuth2ClientCredentialsAuth
        if isinstance(auth, BearerAuth):
            new, what = auth.model_copy(update={"token": ref}), "rest.auth.token"
        elif isinstance(auth, ApiKeyAuth):
            new, what = auth.model_copy(update={"key": ref}), "rest.auth.key"
        elif isinstance(auth, OAuth2ClientCredentialsAuth):
            new, what = auth.model_copy(update={"client_secret": ref}), "rest.auth.client_secret"
        else:
            return None
        return with_section(config, auth=new), {PROBE_SECRET_ENV: value}, what, value
    if config.database is not None:
        url = f"postgresql+psycopg://fundx_probe:{value}@127.0.0.1:{closed_port()}/fundx_probe"
        return (with_section(config, url=f"env:{PROBE_URL_ENV}"), {PROBE_URL_ENV: url},
                "password in database.url", value)
    return None


def _error_texts(error: BaseException) -> list[tuple[str, str]]:
    """(where, text) for an error and the errors chained to it."""
    texts, seen = [], set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current).__name__
        texts.append((f"the {kind} message", str(current)))
        texts.append((f"the {kind} repr", repr(current)))
        action = getattr(current, "action", None)
        if isinstance(action, str):
            texts.append((f"the {kind} action", action))
        texts.append((f"the {kind} arguments", " ".join(map(str, current.args))))
        current = current.__cause__ or current.__context__
    return texts


def _where(secret: str, texts: list[tuple[str, str]], logs: list[tuple[str, str]]) -> list[str]:
    places = sorted({where for where, text in texts if secret in text})
    loggers = sorted({name for name, text in logs if secret in text})
    lines = sum(1 for _, text in logs if secret in text)
    if lines:
        places.append(f"{lines} log line{'s' if lines > 1 else ''} (logger {', '.join(loggers)})")
    return places


def check_secrets(ctx: Context) -> str:
    known = ctx.secret_values()
    probe = _probe_config(ctx)
    if not known and probe is None:
        raise CheckSkipped(f"{ctx.feed}: secrets does not apply: the feed is configured with no credentials")
    findings: list[str] = []
    # 1. a pull with the configured credentials, logging at DEBUG everywhere
    connector = ctx.connector()
    with capture_logs() as capture:
        pull = None
        try:
            pull = connector.extract(ctx.window)
        except Exception as exc:  # noqa: BLE001 - the check judges whatever the connector raised
            error: BaseException | None = exc
        else:
            error = None
    token = getattr(getattr(connector, "_auth", None), "_token", None)
    if token is not None and hasattr(token, "get_secret_value"):
        known = {**known, "the access token the agency issued": token.get_secret_value()}
    texts = [("the connector repr", repr(connector))]
    if pull is not None:
        texts.append(("the pull's repr", repr(pull)))
    if error is not None:
        texts += _error_texts(error)
    logs = _exchange_logs(capture)
    for what, value in known.items():
        places = _where(value, texts, logs)
        if places:
            findings.append(f"{what} (configured) appears in {', '.join(places)}")
    # 2. a wrong credential: the agency's rejection must not carry a secret into errors or logs
    probed = ""
    if probe is not None:
        config, env, what, value = probe
        with environment(env), capture_logs() as capture:
            outcome = attempt(ctx.connector(config, ctx.settings_with(retry_attempts=2)), ctx.window)
        if outcome.error is None:
            findings.append(f"a wrong {what} was accepted: the pull succeeded")
        else:
            probe_texts = _error_texts(outcome.error)
            probe_logs = _exchange_logs(capture)
            for label, secret in {**known, f"the wrong {what} sent by the probe": value}.items():
                places = _where(secret, probe_texts, probe_logs)
                if places:
                    findings.append(f"{label} appears in {', '.join(places)} after the agency rejected a wrong {what}")
            probed = f"; a wrong {what} ended in {type(outcome.error).__name__}, no secret in it"
    if findings:
        raise CheckFailed(f"{ctx.feed}: secrets leak: " + "; ".join(findings))
    checked = (", ".join(known) + " absent from" if known else "no credential configured; nothing secret in")
    return f"{ctx.feed}: {checked} {plural(len(logs), 'DEBUG log line')} and errors{probed}"


def _exchange_logs(capture: LogCapture) -> list[tuple[str, str]]:
    """Log lines of the exchange's process; the in-process sandbox agencies' own lines are theirs."""
    return [(name, text) for name, text in capture.texts() if not (name == "sandbox" or name.startswith("sandbox."))]
