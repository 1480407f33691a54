"""HTTP status -> what to do about it: the one table that the REST connectors and the notifier's channels read.

A failed request's status is looked up once, in :data:`STATUS_TABLE` (:func:`rule_for`): its row says
what the caller does about it (the action column: try again, renew the credentials, fix the address,
fix the configuration), the fundx error that means so (retries read the type, see fundx.core.errors),
and a few words a message may quote. 2xx is success and is not looked up. Each caller words its own
message and its own ``action`` line — a connector names the feed's setting, a notice channel its
FUNDX_NOTIFY entry — but none decides again what a status means.

Retry-After, sent with a 429 or a 503, is read by :func:`retry_after_seconds` for every caller alike.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from fundx.core.errors import (
    AuthError,
    FundxError,
    NotFoundError,
    PermanentError,
    RateLimited,
    TransientError,
)


class StatusAction(StrEnum):
    """What a caller does about a failed request."""

    #: transient: try again later, after Retry-After when the server sent one
    RETRY = "retry"
    #: the credentials were refused: a person renews them (they are not tried again as they are)
    RENEW = "renew credentials"
    #: nothing is at the address: a person fixes the URL or path
    NOT_FOUND = "not found"
    #: the request as configured is refused, or the answer makes no sense: a person fixes the configuration
    CONFIGURATION = "configuration"


class StatusRule(NamedTuple):
    """One row of :data:`STATUS_TABLE`."""

    statuses: range | frozenset[int]
    action: StatusAction
    error: type[FundxError]
    meaning: str


#: the row of a status no other row holds (also one outside 100-599)
UNEXPECTED = StatusRule(range(100, 600), StatusAction.CONFIGURATION, PermanentError, "unexpected status")

#: HTTP status -> action, error and meaning; the first matching row wins. 2xx is success, before the table.
STATUS_TABLE: tuple[StatusRule, ...] = (
    StatusRule(frozenset({429}), StatusAction.RETRY, RateLimited, "rate limited"),
    StatusRule(frozenset({408}), StatusAction.RETRY, TransientError, "request timed out at the agency"),
    StatusRule(range(500, 600), StatusAction.RETRY, TransientError, "server error"),
    StatusRule(frozenset({401, 403}), StatusAction.RENEW, AuthError, "credentials rejected"),
    StatusRule(frozenset({404}), StatusAction.NOT_FOUND, NotFoundError, "endpoint not found"),
    StatusRule(range(400, 500), StatusAction.CONFIGURATION, PermanentError, "request refused"),
    UNEXPECTED,
)


def rule_for(status: int) -> StatusRule:
    """The row of :data:`STATUS_TABLE` that ``status`` (a failure: not 2xx) falls under."""
    for rule in STATUS_TABLE:
        if status in rule.statuses:
            return rule
    return UNEXPECTED


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (one without a zone is taken as UTC,
    as HTTP dates always are); None when there is none or it cannot be read."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
