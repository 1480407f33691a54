"""HTTP status -> action: the one table, Retry-After, bodies cut short (no network involved)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import pytest
from requests.structures import CaseInsensitiveDict

from connectors.http import Response, error_for_status
from fundx.core.errors import (
    AuthError,
    DataError,
    IncompletePull,
    NotFoundError,
    PermanentError,
    RateLimited,
    TransientError,
)
from fundx.core.http_status import STATUS_TABLE, retry_after_seconds


def response(status: int, body: bytes = b"{}", **headers: str) -> Response:
    return Response(status, CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()}), body, "/api/x")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, RateLimited),
        (408, TransientError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (400, PermanentError),
        (405, PermanentError),
        (422, PermanentError),
        (302, PermanentError),
    ],
)
def test_status_table(status, kind):
    error = error_for_status(response(status), feed="police.deaths", what="page 2", renew="FUNDX_X")
    assert type(error) is kind
    assert str(error).startswith("police.deaths: page 2:")
    assert f"HTTP {status}" in str(error)


def test_success_is_no_error():
    assert error_for_status(response(200), feed="f.x", what="page 1") is None


def test_table_is_ordered_specific_first():
    kinds = [rule.error for rule in STATUS_TABLE]  # the table gained an action column
    assert kinds.index(RateLimited) < kinds.index(PermanentError)


def test_rate_limited_carries_retry_after():
    error = error_for_status(response(429, Retry_After="3"), feed="f.x", what="page 2")
    assert isinstance(error, RateLimited) and error.retry_after == 3.0


def test_auth_error_names_the_credential_and_the_agency_code():
    error = error_for_status(
        response(401, b'{"error": "invalid_token"}'), feed="f.x", what="page 1", renew="FUNDX_POLICE_CLIENT_SECRET"
    )
    assert "invalid_token" in str(error)
    assert error.action == "renew FUNDX_POLICE_CLIENT_SECRET"


def test_error_code_from_www_authenticate_and_never_free_text():
    bearer = response(401, b"", WWW_Authenticate='Bearer error="invalid_token"')
    assert bearer.error_code() == "invalid_token"
    chatty = response(400, b'{"error": "110105199001011234 is not allowed here"}')
    assert chatty.error_code() is None


@pytest.mark.parametrize(("value", "seconds"), [("1", 1.0), ("0", 0.0), (" 2.5 ", 2.5), ("", None), (None, None), ("soon", None)])
def test_retry_after_seconds(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_retry_after_http_date_in_the_past_is_zero():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_retry_after_http_date_without_a_zone_is_utc():
    """``-0000`` (RFC 5322: UTC, local zone unknown) parses to a naive time; HTTP dates are UTC."""
    later = retry_after_seconds(email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120)).replace("+0000", "-0000"))
    assert later is not None and 60 < later <= 120


def test_body_cut_short_is_incomplete_and_garbage_is_data_error():
    cut = response(200, b'{"data": [{"a": 1}', Content_Length="40")
    with pytest.raises(IncompletePull):
        cut.json(feed="f.x", what="page 2")
    garbage = response(200, b"<html>gateway</html>", Content_Length="20")
    with pytest.raises(DataError):
        garbage.json(feed="f.x", what="page 2")
