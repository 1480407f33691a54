"""The conformance suite every connector passes: eight checks against a live endpoint.

    results = run_suite("police.deaths")                               # the configured endpoint
    results = run_suite("justice.prisoners", skip={"paging": "why"})   # a skip needs a written reason
                                                                       # (or the config's conformance: skip:)
    results = run_suite("police.deaths", context=Context.for_sandbox("police.deaths", sandbox))

Each check takes a :class:`Context` (the feed, its config and contract, the environment that names
its endpoint and credentials, the settings, and — against the sandbox — fault control and the rows
the agency serves) and returns a :class:`Result`: ``passed``, ``failed`` or ``skipped`` with a
message that names the feed and what is wrong. Messages never hold a record's values or a secret
(known secrets are masked in every message as a last guard).

==============  =================================================================================
check           what it asks
==============  =================================================================================
connection      a small window (the last 30 days) pulls without error, in contract columns
paging          REST: paging ends, no record arrives twice (the raw pages, before the connector's
                de-duplication by key), and the rows are what the agency announced or serves
incremental     [t0, t1) then [t1, t2) is [t0, t2): disjoint keys (file drops: disjoint files),
                nothing lost, the same content
rerun           the same window again gives the same keys and the same content digest
contract        the rows fit the contract: no schema break, failing rows within the batch policy
secrets         no credential, access token or probe secret in log lines (DEBUG) or errors,
                including the error from a deliberately wrong credential
timeouts        every HTTP request has finite connect and read timeouts from the settings; a
                database engine a connect and statement timeout
retries         transient failures are retried (and end with every row when they pass); permanent
                ones fail at once with a permanent error type
==============  =================================================================================

Checks that do not apply to a transport are skipped with a built-in reason (:data:`NOT_APPLICABLE`).
Fault-based parts of ``retries`` use the sandbox's fault profiles when the feed's agency is a
sandbox agency (in process, or a running ``fundx sandbox start`` through its control server);
against a real agency they fall back to probes that need no cooperation (an unreachable address, a
missing path, folder or relation).

The suite's modules: ``results`` (the checks, their results and skips), ``context`` (what a check
works with) and ``fault_control`` (the sandbox's fault profiles), ``probing`` (the machinery the
checks share: log capture, attempts, probe configs), and the checks themselves: ``pulling``
(connection, paging, incremental, rerun, contract), ``leaks`` (secrets) and ``failures`` (timeouts,
retries). This module runs them and exposes the suite's API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fundx.core.errors import content_free
from onboarding.conformance.context import Context
from onboarding.conformance.failures import check_retries, check_timeouts
from onboarding.conformance.fault_control import ControlServerFaults, FaultControl, SandboxFaults
from onboarding.conformance.leaks import check_secrets
from onboarding.conformance.probing import describe
from onboarding.conformance.pulling import (
    check_connection,
    check_contract,
    check_incremental,
    check_paging,
    check_rerun,
)
from onboarding.conformance.results import (
    CHECKS,
    FAILED,
    NOT_APPLICABLE,
    PASSED,
    SKIPPED,
    CheckFailed,
    CheckSkipped,
    Result,
    check_skip,
    config_skip,
    suite_passed,
)

__all__ = [
    "CHECKS",
    "FAILED",
    "NOT_APPLICABLE",
    "PASSED",
    "SKIPPED",
    "Context",
    "ControlServerFaults",
    "FaultControl",
    "Result",
    "SandboxFaults",
    "check_skip",
    "config_skip",
    "run_check",
    "run_suite",
    "suite_passed",
]

#: each check's function (it returns what it found, or raises CheckFailed or CheckSkipped)
CHECK_FUNCTIONS: dict[str, Callable[[Context], str]] = {
    "connection": check_connection,
    "paging": check_paging,
    "incremental": check_incremental,
    "rerun": check_rerun,
    "contract": check_contract,
    "secrets": check_secrets,
    "timeouts": check_timeouts,
    "retries": check_retries,
}
assert tuple(CHECK_FUNCTIONS) == CHECKS


def run_suite(
    feed: str,
    *,
    skip: Mapping[str, str] | None = None,
    context: Context | None = None,
    checks: Iterable[str] | None = None,
    **context_options: Any,
) -> list[Result]:
    """Every check (or those named) for ``feed``; ``skip`` maps a check to the written reason for skipping it."""
    skipped = check_skip(skip)
    names = list(checks) if checks is not None else list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)} (checks: {', '.join(CHECKS)})")
    if context is None:
        context = Context.for_feed(feed, **context_options)
    return [run_check(name, context, skip=skipped) for name in names]


def run_check(name: str, context: Context, *, skip: Mapping[str, str] | None = None) -> Result:
    """One check for the context's feed; never raises for what it finds (a failure is a Result)."""
    feed = context.feed
    skipped = config_skip(context.config) | check_skip(skip)
    if name not in CHECKS:
        raise ValueError(f"unknown check {name!r} (checks: {', '.join(CHECKS)})")
    if name in skipped:
        return Result(feed, name, SKIPPED, f"{feed}: {name} skipped: {skipped[name]}")
    reason = NOT_APPLICABLE.get((name, context.transport))
    if reason:
        return Result(feed, name, SKIPPED, f"{feed}: {name} does not apply: {reason}")
    started = time.monotonic()
    secrets_known: dict[str, str] = {}
    try:
        with context.applied():
            secrets_known = context.secret_values()
            message = CHECK_FUNCTIONS[name](context)
        status = PASSED
    except CheckSkipped as exc:
        status, message = SKIPPED, str(exc)
    except CheckFailed as exc:
        status, message = FAILED, str(exc)
    except Exception as exc:  # noqa: BLE001 - what a pull raised: its type and content-free message
        status, message = FAILED, f"{describe(content_free(exc))}"
    message = _mask(message if message.startswith(f"{feed}:") else f"{feed}: {message}", secrets_known)
    return Result(feed, name, status, message, time.monotonic() - started)


def _mask(text: str, known: Mapping[str, str]) -> str:
    """The text with every known secret replaced by its label: the messages' last guard."""
    for label, value in known.items():
        if value and value in text:
            text = text.replace(value, f"<{label}>")
    return text
