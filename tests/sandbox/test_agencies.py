"""The simulated agencies over real sockets: paging, auth, every fault profile on the wire, drops, database."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import openpyxl
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from connectors.registry import registry
from sandbox.agencies import Sandbox, parse_faults
from sandbox.city import generate_city
from sandbox.drops import EXCEL_NUMBER
from sandbox.faults import RENAMED
from sandbox.schema import feed_schema

STALL = 1.0
SHANGHAI = ZoneInfo("Asia/Shanghai")
REPO = Path(__file__).resolve().parents[2]
#: agency -> the feed it serves (each shipped agency serves one)
AGENCIES = {agency: feeds[0] for agency, feeds in registry().agencies.items()}


# -- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def city():
    """A small synthetic city shared by every sandbox in this module."""
    return generate_city(20_000)


@pytest.fixture(scope="session")
def sb(city, sandbox_factory) -> Iterator[Sandbox]:
    with sandbox_factory("agencies", city=city, stall_seconds=STALL) as sandbox:
        yield sandbox


@contextlib.contextmanager
def armed(sb: Sandbox, agency: str, faults: list[str]) -> Iterator[None]:
    sb.set_faults(agency, faults)
    try:
        yield
    finally:
        sb.set_faults(agency, [])


def rows_of(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[tuple]:
    """A frame as tuples of str/None, the way the wire carries it."""
    plain = frame[list(columns)].astype(object)
    return [tuple(r) for r in plain.where(frame[list(columns)].notna(), None).itertuples(index=False)]


def records_as_rows(records: list[dict], columns: tuple[str, ...]) -> list[tuple]:
    return [tuple(r[c] for c in columns) for r in records]


def window_of(sb: Sandbox, feed: str) -> tuple[datetime, datetime]:
    """A window holding roughly the middle 60 % of a feed's records."""
    schema = feed_schema(feed)
    t = pd.to_datetime(sb.city.feeds[feed][schema.incremental], format="ISO8601", utc=True).sort_values()
    lo, hi = t.iloc[len(t) // 5], t.iloc[4 * len(t) // 5]
    return lo.to_pydatetime(), hi.to_pydatetime()


class Client:
    """A small retrying client of the three REST agencies (the exchange has its own; this one checks the wire)."""

    def __init__(self, sb: Sandbox, agency: str, timeout: float = 10.0) -> None:
        self.sb, self.agency, self.timeout = sb, agency, timeout
        self.base = sb.urls[agency]
        self.http = requests.Session()
        self.token: str | None = None
        self.statuses: list[int | str] = []
        self.received = 0  # records received, before deduplication

    def headers(self) -> dict[str, str]:
        env = self.sb.env
        if self.agency == "civil_affairs":
            return {"Authorization": f"Bearer {env['FUNDX_CIVIL_AFFAIRS_TOKEN']}"}
        if self.agency == "market_regulation":
            return {"X-Api-Key": env["FUNDX_MARKET_REGULATION_API_KEY"]}
        if self.token is None:
            self.token = police_token(self.sb)
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, params: dict, retry: bool = True) -> dict:
        for _ in range(12):
            try:
                r = self.http.get(self.base + path, params=params, headers=self.headers(), timeout=self.timeout)
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    return r.json()
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                self.statuses.append(type(exc).__name__)
                self.http = requests.Session()
                if not retry:
                    raise
                continue
            if not retry:
                r.raise_for_status()
            if r.status_code == 401 and self.agency == "police":
                self.token = None
            elif r.status_code in (429, 503):
                time.sleep(min(float(r.headers.get("Retry-After", 0)), 0.05))
            else:
                r.raise_for_status()
        raise AssertionError(f"gave up after {self.statuses}")

    def pull(self, start: datetime | None, end: datetime | None, size: int = 7) -> list[dict]:
        """Every record of the window, deduplicated by key (a page served twice adds nothing)."""
        records: list[dict] = []
        if self.agency == "civil_affairs":
            params = {"limit": size, **_window("reported_from", start), **_window("reported_to", end)}
            while True:
                body = self.get("/api/v1/cremations", params)
                records += body["data"]
                if body["next_cursor"] is None:
                    break
                params["cursor"] = body["next_cursor"]
        elif self.agency == "police":
            page = 1
            while True:
                params = {"page": page, "size": size, **_window("updated_from", start), **_window("updated_to", end)}
                body = self.get("/hukou/v2/death-cancellations", params)
                if body["page"] != page:  # the agency sent another page than asked for: ask again
                    self.statuses.append("wrong page")
                    continue
                records += body["rows"]
                if page * size >= body["total"]:
                    break
                page += 1
        else:
            params = {"limit": size, **_window("changed_since", start), **_window("changed_until", end)}
            while True:
                body = self.get("/open/v1/enterprises/changes", params)
                records += body["items"]
                if not body["has_more"]:
                    break
                params.update(changed_since=records[-1]["changed_at"], after=records[-1]["uscc"])
        self.received = len(records)
        key = feed_schema(AGENCIES[self.agency]).key
        seen: dict[str, dict] = {}
        for r in records:
            seen.setdefault(r[key], r)
        return list(seen.values())


def _window(name: str, moment: datetime | None) -> dict[str, str]:
    return {} if moment is None else {name: moment.isoformat()}


def police_token(sb: Sandbox) -> str:
    env = sb.env
    r = requests.post(
        sb.urls["police"] + "/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "hukou.read"},
        auth=(env["FUNDX_POLICE_CLIENT_ID"], env["FUNDX_POLICE_CLIENT_SECRET"]),
        timeout=5,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    return body["access_token"]


REST = ("civil_affairs", "police", "market_regulation")
FIRST_PAGE = {
    "civil_affairs": ("/api/v1/cremations", {"limit": 5}),
    "police": ("/hukou/v2/death-cancellations", {"page": 1, "size": 5}),
    "market_regulation": ("/open/v1/enterprises/changes", {"limit": 5}),
}


# -- fault specs -------------------------------------------------------------------------------------


def _on(*transports: str) -> list[str]:
    """The agencies whose feeds come over one of these transports (from the feed configs)."""
    return [a for a, ts in registry().transports.items() if set(ts) & set(transports)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", {}),
        ("police=server_errors,rate_limit;justice=empty", {"police": ["server_errors", "rate_limit"], "justice": ["empty"]}),
        (" police = slow ; ; police=reset ", {"police": ["slow", "reset"]}),
        ("all=slow", {a: ["slow"] for a in _on("rest", "database")}),
        ("all=truncated;justice=empty", {a: ["truncated"] for a in _on("rest", "filedrop")}
         | {"justice": ["truncated", "empty"]}),
        ("police=", {"police": []}),
    ],
)
def test_parse_faults(spec, expected):
    assert parse_faults(spec) == expected


def test_fault_targets_are_the_agencies_of_the_feed_configs():
    assert set(_on("rest")) >= {"civil_affairs", "police", "market_regulation", "health_commission"}
    assert set(_on("filedrop")) >= {"religious_affairs", "justice"}
    assert set(_on("database")) >= {"medical_insurance", "tax_bureau"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("polce=slow", "unknown agency 'polce'"),
        ("police=slw", "unknown fault 'slw' for agency police"),
        ("justice=server_errors", "fault 'server_errors' does not apply to agency justice"),
        ("medical_insurance=truncated", "'truncated' does not apply to agency medical_insurance"),
        ("police", "'police' is not AGENCY=FAULT"),
        ("all=nope", "unknown fault 'nope' in 'all=nope'"),
    ],
)
def test_parse_faults_names_the_bad_part(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


def test_set_faults_rejects_unknown_names(sb):
    with pytest.raises(ValueError, match="unknown agency 'tax'.*slow"):
        sb.set_faults("tax", ["slow"])
    with pytest.raises(ValueError, match="'explode'.*police"):
        sb.set_faults("police", ["explode"])
    with pytest.raises(ValueError, match="'reset'.*religious_affairs"):
        sb.set_faults("religious_affairs", ["reset"])
    assert sb.faults["police"] == []


def test_bad_faults_fail_before_any_work(tmp_path, city):
    with pytest.raises(ValueError, match="justice"):
        Sandbox(tmp_path, city=city, faults={"justice": ["rate_limit"]})
    assert not any(tmp_path.iterdir())


# -- what the exchange is handed --------------------------------------------------------------------


def test_exchange_env_and_state_files(sb, city):
    env_file = sb.home / "exchange.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = dict(ln.split("=", 1) for ln in env_file.read_text().splitlines() if ln and not ln.startswith("#"))
    assert lines == sb.env
    assert set(sb.env) == _referenced()  # every env: reference of every feed config, and nothing else
    assert {"FUNDX_CIVIL_AFFAIRS_TOKEN", "FUNDX_POLICE_CLIENT_SECRET", "FUNDX_JUSTICE_DROP",
            "FUNDX_TAX_BUREAU_DB_URL"} < set(sb.env)
    assert sb.not_simulated == {} and sb.feeds == list(registry().names)
    state_text = (sb.home / "sandbox.json").read_text()
    state = json.loads(state_text)
    assert state["pid"] == os.getpid() and state["people"] == city.people and state["seed"] == city.seed
    assert state["control_url"] == sb.control_url and set(state["urls"]) == set(AGENCIES)
    for secret in ("FUNDX_CIVIL_AFFAIRS_TOKEN", "FUNDX_POLICE_CLIENT_SECRET", "FUNDX_MARKET_REGULATION_API_KEY",
                   "FUNDX_HEALTH_COMMISSION_API_KEY"):
        assert sb.env[secret] not in state_text
    ids = city.feeds["civil_affairs.deaths"]["id_number"].dropna().head(50)
    assert not any(i in state_text for i in ids)
    assert (sb.home / "truth.json").is_file()


def _referenced() -> set[str]:
    """The environment variables the feed configs reference (endpoints and credentials)."""
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, str) and value.startswith("env:"):
            found.add(value[4:])

    for config in registry().feeds.values():
        walk(config.model_dump())
    return found


def test_control_server(sb):
    assert requests.get(sb.control_url + "/health", timeout=5).json()["status"] == "ok"
    r = requests.post(sb.control_url + "/faults", json={"agency": "police", "faults": ["slow"]}, timeout=5)
    assert r.status_code == 200 and r.json() == {"agency": "police", "faults": ["slow"]}
    assert requests.get(sb.control_url + "/faults", timeout=5).json()["faults"]["police"] == ["slow"]
    assert json.loads((sb.home / "sandbox.json").read_text())["faults"]["police"] == ["slow"]
    r = requests.post(sb.control_url + "/faults", json={"agency": "police", "faults": ["boom"]}, timeout=5)
    assert r.status_code == 400 and "boom" in r.json()["detail"] and "police" in r.json()["detail"]
    assert requests.post(sb.control_url + "/faults", data=b"{", timeout=5).status_code == 400
    requests.post(sb.control_url + "/faults", json={"agency": "police", "faults": []}, timeout=5).raise_for_status()
    assert sb.faults["police"] == []


# -- REST: paging and auth ----------------------------------------------------------------------------


@pytest.mark.parametrize("agency", REST)
@pytest.mark.parametrize("whole", [True, False], ids=["everything", "window"])
def test_rest_pages_to_exactly_the_expected_rows(sb, agency, whole):
    feed = AGENCIES[agency]
    start, end = (None, None) if whole else window_of(sb, feed)
    client = Client(sb, agency)
    got = client.pull(start, end, size=7)
    columns = feed_schema(feed).columns
    expected = sb.expected(feed, start, end)
    assert len(expected) > (20 if whole else 5)
    assert records_as_rows(got, columns) == rows_of(expected, columns)
    assert set(client.statuses) == {200}
    if whole:
        assert len(expected) == len(sb.city.feeds[feed])


def test_window_bounds_are_half_open(sb):
    feed = "civil_affairs.deaths"
    first = sb.expected(feed).iloc[0]
    t = datetime.fromisoformat(first["reported_at"])
    got = Client(sb, "civil_affairs").pull(t, t + timedelta(seconds=1))
    assert first["record_id"] in {r["record_id"] for r in got}
    assert Client(sb, "civil_affairs").pull(t - timedelta(seconds=1), t) == []


def test_offsets_in_any_form(sb):
    """UTC 'Z', '+08:00' and an unencoded '+' (which arrives as a space) name the same instants."""
    start, end = window_of(sb, "civil_affairs.deaths")
    headers = {"Authorization": f"Bearer {sb.env['FUNDX_CIVIL_AFFAIRS_TOKEN']}"}
    base = sb.urls["civil_affairs"] + "/api/v1/cremations"

    def data(query: str) -> list[dict]:
        r = requests.get(f"{base}?{query}&limit=100", headers=headers, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    to = quote(end.isoformat())
    encoded = data(urlencode({"reported_from": start.astimezone(SHANGHAI).isoformat(), "reported_to": end.isoformat()}))
    zulu = data(f"reported_from={start.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}&reported_to={to}")
    bare_plus = data(f"reported_from={start.astimezone(SHANGHAI).isoformat()}&reported_to={to}")
    assert encoded and encoded == zulu == bare_plus
    naive = requests.get(base, params={"reported_from": "2026-01-01T00:00:00"}, headers=headers, timeout=5)
    assert naive.status_code == 400 and "offset" in naive.json()["detail"]


def test_auth_rejections(sb):
    env, urls = sb.env, sb.urls
    civil = urls["civil_affairs"] + "/api/v1/cremations"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": env["FUNDX_CIVIL_AFFAIRS_TOKEN"]}):
        r = requests.get(civil, headers=headers, timeout=5)
        assert (r.status_code, r.json()) == (401, {"error": "invalid_token"})
    r = requests.get(civil, params={"limit": 5001}, headers={"Authorization": f"Bearer {env['FUNDX_CIVIL_AFFAIRS_TOKEN']}"},
                     timeout=5)
    assert r.status_code == 400

    token_url = urls["police"] + "/oauth2/token"
    form = {"grant_type": "client_credentials", "scope": "hukou.read"}
    r = requests.post(token_url, data=form, auth=(env["FUNDX_POLICE_CLIENT_ID"], "wrong"), timeout=5)
    assert (r.status_code, r.json()) == (401, {"error": "invalid_client"})
    r = requests.post(token_url, data=form, timeout=5)
    assert r.status_code == 401
    r = requests.post(token_url, data={"grant_type": "password"},
                      auth=(env["FUNDX_POLICE_CLIENT_ID"], env["FUNDX_POLICE_CLIENT_SECRET"]), timeout=5)
    assert (r.status_code, r.json()["error"]) == (400, "unsupported_grant_type")
    deaths = urls["police"] + "/hukou/v2/death-cancellations"
    r = requests.get(deaths, headers={"Authorization": "Bearer forged"}, timeout=5)
    assert (r.status_code, r.json()) == (401, {"error": "invalid_token"})
    assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    r = requests.get(deaths, params={"size": 1001}, headers={"Authorization": f"Bearer {police_token(sb)}"}, timeout=5)
    assert r.status_code == 400

    market = urls["market_regulation"] + "/open/v1/enterprises/changes"
    for headers in ({}, {"X-Api-Key": "nope"}):
        r = requests.get(market, headers=headers, timeout=5)
        assert (r.status_code, r.json()) == (401, {"error": "invalid_api_key"})
    assert requests.get(urls["civil_affairs"] + "/nothing", timeout=5).status_code == 404


def refill_police_bucket(fraction: float = 1.0) -> None:
    """Wait until the police token bucket (50/s, burst 50) holds enough for an exact sequence of requests."""
    time.sleep(fraction)


def test_police_token_bucket_answers_429(sb):
    refill_police_bucket()
    token = police_token(sb)
    http = requests.Session()
    url = sb.urls["police"] + "/hukou/v2/death-cancellations"
    statuses = [http.get(url, params={"size": 1}, headers={"Authorization": f"Bearer {token}"}, timeout=5)
                for _ in range(80)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited and all(r.headers["Retry-After"] == "1" for r in limited)
    assert sum(r.status_code == 200 for r in statuses) >= 50


# -- REST: every fault on the wire --------------------------------------------------------------------


def _first_two(sb: Sandbox, agency: str) -> tuple[str, dict, Client]:
    """A client that has fetched its first page since the fault was armed; the next request is the 2nd."""
    if agency == "police":
        refill_police_bucket(0.3)
    client = Client(sb, agency)
    path, params = FIRST_PAGE[agency]
    client.get(path, params)
    return path, params, client


@pytest.mark.parametrize("agency", REST)
def test_server_errors_are_a_burst_of_three_503(sb, agency):
    with armed(sb, agency, ["server_errors"]):
        path, params, client = _first_two(sb, agency)
        codes = [client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5).status_code
                 for _ in range(5)]
    assert codes == [503, 503, 503, 200, 200]


def test_a_one_page_pull_shows_the_fault_on_its_only_page(sb):
    """When the 1st page request is also the last page of its window, the faults act on it."""
    client = Client(sb, "civil_affairs")
    url, headers = client.base + "/api/v1/cremations", client.headers()
    with armed(sb, "civil_affairs", ["server_errors"]):
        codes = [client.http.get(url, params={"limit": 5000}, headers=headers, timeout=5).status_code
                 for _ in range(4)]
    assert codes == [503, 503, 503, 200]
    with armed(sb, "civil_affairs", ["expired_token"]):
        r = client.http.get(url, params={"limit": 5000}, headers=headers, timeout=5)
    assert (r.status_code, r.json()) == (401, {"error": "invalid_token"})


@pytest.mark.parametrize("agency", REST)
def test_rate_limit_answers_two_429_with_retry_after(sb, agency):
    with armed(sb, agency, ["rate_limit"]):
        path, params, client = _first_two(sb, agency)
        replies = [client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5)
                   for _ in range(3)]
    assert [r.status_code for r in replies] == [429, 429, 200]
    assert replies[0].headers["Retry-After"] == "1"


def test_reset_breaks_the_connection(sb):
    with armed(sb, "civil_affairs", ["reset"]):
        path, params, client = _first_two(sb, "civil_affairs")
        with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5)
        assert requests.get(client.base + path, params=params, headers=client.headers(), timeout=5).status_code == 200


def test_reset_is_a_tcp_reset(sb):
    """On a raw socket: headers and part of the body arrive, then ECONNRESET (not an orderly end)."""
    with armed(sb, "market_regulation", ["reset"]):
        path, _params, _client = _first_two(sb, "market_regulation")
        host, port = sb.urls["market_regulation"].removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(f"GET {path}?limit=5 HTTP/1.1\r\nHost: x\r\nX-Api-Key: {sb.env['FUNDX_MARKET_REGULATION_API_KEY']}"
                      "\r\n\r\n".encode())
            received = b""
            with pytest.raises(ConnectionResetError):
                while chunk := s.recv(65536):
                    received += chunk
        assert received.startswith(b"HTTP/1.1 200")


def test_truncated_body_fails_on_read(sb):
    with armed(sb, "police", ["truncated"]):
        path, params, client = _first_two(sb, "police")
        r = client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5, stream=True)
        assert r.status_code == 200
        announced = int(r.headers["Content-Length"])
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
            r.content  # noqa: B018
        assert announced > 0


def test_read_timeout_stalls_the_second_page(sb):
    with armed(sb, "civil_affairs", ["read_timeout"]):
        path, params, client = _first_two(sb, "civil_affairs")
        began = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            client.http.get(client.base + path, params=params, headers=client.headers(), timeout=STALL / 4)
        assert time.monotonic() - began < STALL
        client.http = requests.Session()
        r = client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5)
        assert r.status_code == 200


@pytest.mark.parametrize("agency", REST)
def test_page_twice_answers_the_first_page_again(sb, agency):
    path, params = FIRST_PAGE[agency]
    with armed(sb, agency, ["page_twice"]):
        client = Client(sb, agency)
        first = client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5)
        second_params = dict(params)
        if agency == "civil_affairs":
            second_params["cursor"] = first.json()["next_cursor"]
        elif agency == "police":
            second_params["page"] = 2
        else:
            last = first.json()["items"][-1]
            second_params.update(changed_since=last["changed_at"], after=last["uscc"])
        second = client.http.get(client.base + path, params=second_params, headers=client.headers(), timeout=5)
        third = client.http.get(client.base + path, params=second_params, headers=client.headers(), timeout=5)
    assert second.content == first.content
    assert third.content != first.content


@pytest.mark.parametrize("agency", REST)
def test_renamed_column_renames_the_identity_field(sb, agency):
    field = "legal_rep_id_number" if agency == "market_regulation" else "id_number"
    with armed(sb, agency, ["renamed_column"]):
        records = Client(sb, agency).pull(None, None, size=500)
    assert records and all(field not in r and RENAMED[field] in r for r in records)


@pytest.mark.parametrize("agency", REST)
def test_empty_serves_no_records(sb, agency):
    with armed(sb, agency, ["empty"]):
        assert Client(sb, agency).pull(None, None) == []
        assert len(sb.expected(AGENCIES[agency])) == 0
    assert len(sb.expected(AGENCIES[agency])) > 0


def test_slow_delays_every_response(sb):
    with armed(sb, "market_regulation", ["slow"]):
        began = time.monotonic()
        requests.get(sb.urls["market_regulation"] + "/open/v1/enterprises/changes", timeout=5)  # even a 401
        assert time.monotonic() - began >= 0.2


@pytest.mark.parametrize("agency", REST)
def test_trickle_sends_every_page_a_byte_at_a_time_until_lifted(sb, agency):
    """Headers at once, then the body one byte a second: each read waits about a second (no read timeout
    trips), the whole body would take hours. Every page, from the first, while it is armed."""
    client = Client(sb, agency)
    path, params = FIRST_PAGE[agency]
    if agency == "police":
        refill_police_bucket(0.3)
    with armed(sb, agency, ["trickle"]):
        for _ in range(2):
            began = time.monotonic()
            with client.http.get(client.base + path, params=params, headers=client.headers(), timeout=(5, 5),
                                 stream=True) as reply:
                assert reply.status_code == 200 and time.monotonic() - began < 5
                announced = int(reply.headers["Content-Length"])
                first = reply.raw.read(2)  # two bytes: the second comes a second after the first
                assert first == b'{"' and time.monotonic() - began >= 1.0
                assert announced > 100  # the rest would take minutes; the client hangs up here
    with client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5) as reply:
        assert reply.status_code == 200 and reply.json()  # lifted: the page comes whole at once


def test_expired_token_civil_affairs_rejects_from_the_second_page(sb):
    with armed(sb, "civil_affairs", ["expired_token"]):
        path, params, client = _first_two(sb, "civil_affairs")
        for _ in range(2):
            r = client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5)
            assert (r.status_code, r.json()) == (401, {"error": "invalid_token"})


def test_expired_token_police_is_cured_by_a_new_token(sb):
    with armed(sb, "police", ["expired_token"]):
        path, params, client = _first_two(sb, "police")
        old = client.token
        r = client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5)
        assert (r.status_code, r.json()) == (401, {"error": "invalid_token"})
        assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        client.token = police_token(sb)
        assert client.token != old
        for _ in range(2):
            assert client.http.get(client.base + path, params=params, headers=client.headers(), timeout=5).status_code == 200


def test_expired_token_market_rejects_the_key(sb):
    with armed(sb, "market_regulation", ["expired_token"]):
        r = requests.get(sb.urls["market_regulation"] + "/open/v1/enterprises/changes",
                         headers={"X-Api-Key": sb.env["FUNDX_MARKET_REGULATION_API_KEY"]}, timeout=5)
        assert (r.status_code, r.json()) == (401, {"error": "invalid_api_key"})


@pytest.mark.parametrize("agency", REST)
@pytest.mark.parametrize("fault", ["server_errors", "rate_limit", "read_timeout", "reset", "truncated", "page_twice"])
def test_a_retrying_client_ends_with_every_row(sb, agency, fault):
    feed = AGENCIES[agency]
    with armed(sb, agency, [fault, "rate_limit"] if fault == "server_errors" else [fault]):
        client = Client(sb, agency, timeout=STALL / 4)
        got = client.pull(None, None, size=9)
    columns = feed_schema(feed).columns
    assert records_as_rows(got, columns) == rows_of(sb.expected(feed), columns)
    if fault == "page_twice":
        assert client.received > len(got) or "wrong page" in client.statuses  # the fault did show
    else:
        assert len(set(map(str, client.statuses))) > 1


def test_servers_log_no_query_strings(sb, caplog):
    caplog.set_level(logging.DEBUG, logger="sandbox")
    start, end = window_of(sb, "civil_affairs.deaths")
    Client(sb, "civil_affairs").pull(start, end)
    text = caplog.text
    assert "reported_from" not in text and "cursor" not in text and "Bearer" not in text


# -- file drops ---------------------------------------------------------------------------------------


def _marker(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (path.parent / (path.name + ".ok")).read_text().splitlines())


def test_religious_csv_files_are_gb18030_with_and_without_bom(sb):
    folder = Path(sb.env["FUNDX_RELIGIOUS_AFFAIRS_DROP"])
    schema = feed_schema("religious_affairs.deaths")
    files = sorted(folder.glob("deaths_*.csv"))
    assert len(files) >= 2
    boms = set()
    frames = []
    for path in files:
        data = path.read_bytes()
        marker = _marker(path)
        assert marker["sha256"] == hashlib.sha256(data).hexdigest()
        boms.add(data.startswith(b"\x84\x31\x95\x33"))
        text = data.decode("gb18030").removeprefix("\ufeff")
        assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        assert list(frame.columns) == [schema.headers[c] for c in schema.columns]
        assert len(frame) == int(marker["rows"])
        frames.append(frame)
    assert boms == {True, False}
    served = pd.concat(frames, ignore_index=True).set_axis(list(schema.columns), axis=1)
    expected = sb.expected("religious_affairs.deaths").fillna("")
    assert sorted(map(tuple, served.to_numpy())) == sorted(map(tuple, expected[list(schema.columns)].to_numpy()))


def test_drops_window_by_marker_time(sb):
    folder = Path(sb.env["FUNDX_RELIGIOUS_AFFAIRS_DROP"])
    markers = sorted(folder.glob("*.ok"), key=lambda p: p.stat().st_mtime)
    mid = datetime.fromtimestamp(markers[len(markers) // 2].stat().st_mtime, tz=SHANGHAI)
    early, late = sb.expected("religious_affairs.deaths", None, mid), sb.expected("religious_affairs.deaths", mid, None)
    assert len(early) and len(late)
    assert len(early) + len(late) == len(sb.expected("religious_affairs.deaths"))
    assert all(m.stat().st_mtime <= time.time() for m in markers)


def test_justice_xlsx_snapshots(sb):
    folder = Path(sb.env["FUNDX_JUSTICE_DROP"])
    schema = feed_schema("justice.prisoners")
    files = sorted(folder.glob("prisoners_*.xlsx"))
    assert len(files) == 3
    latest: dict[str, tuple] = {}
    numeric_ids = 0
    for path in files:
        marker = _marker(path)
        assert marker["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        wb = openpyxl.load_workbook(path, read_only=True)
        rows = list(wb["在押人员"].iter_rows(values_only=True))
        assert list(rows[0]) == [schema.headers[c] for c in schema.columns]
        assert len(rows) - 1 == int(marker["rows"])
        id_col = schema.columns.index("id_number")
        for row in rows[1:]:
            if isinstance(row[id_col], float):
                numeric_ids += 1
            latest[row[0]] = row
        wb.close()
    expected = sb.expected("justice.prisoners")
    assert sorted(latest) == list(expected["prisoner_id"])
    mangled = expected["id_number"].str.contains(EXCEL_NUMBER, na=False).sum()
    assert (numeric_ids > 0) == (mangled > 0)


def test_drop_faults(sb):
    folder = Path(sb.env["FUNDX_RELIGIOUS_AFFAIRS_DROP"])
    with armed(sb, "religious_affairs", ["renamed_column"]):
        path = sorted(folder.glob("deaths_*.csv"))[0]
        header = path.read_bytes().decode("gb18030").removeprefix("\ufeff").split("\r\n", 1)[0]
        assert "公民身份号码" not in header and RENAMED["公民身份号码"] in header
        assert _marker(path)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with armed(sb, "justice", ["empty"]):
        assert list(Path(sb.env["FUNDX_JUSTICE_DROP"]).iterdir()) == []
        assert len(sb.expected("justice.prisoners")) == 0
    assert len(list(Path(sb.env["FUNDX_JUSTICE_DROP"]).glob("*.xlsx"))) == 3


def test_drop_truncated_is_restored_a_second_later(sb):
    folder = Path(sb.env["FUNDX_JUSTICE_DROP"])
    newest = max(folder.glob("*.xlsx"), key=lambda p: ((p.parent / (p.name + ".ok")).stat().st_mtime, p.name))
    whole = newest.read_bytes()
    marker_time = (folder / (newest.name + ".ok")).stat().st_mtime
    with armed(sb, "justice", ["truncated"]):
        cut = newest.read_bytes()
        assert len(cut) < len(whole) and hashlib.sha256(cut).hexdigest() != _marker(newest)["sha256"]
        deadline = time.monotonic() + 3
        while newest.read_bytes() != whole and time.monotonic() < deadline:
            time.sleep(0.1)
        assert newest.read_bytes() == whole
    assert (folder / (newest.name + ".ok")).stat().st_mtime == marker_time


# -- the settlement database --------------------------------------------------------------------------


def _bills_equal(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got["bill_id"]) == list(expected["bill_id"])
    assert list(got["id_number"]) == list(expected["id_number"])
    assert (got["total_amount"].astype(float).round(2) == expected["total_amount"].astype(float).round(2)).all()
    settled = pd.to_datetime(got["settled_at"])
    if settled.dt.tz is None:
        settled = settled.dt.tz_localize("Asia/Shanghai")
    assert (settled.to_numpy() == pd.to_datetime(expected["settled_at"], utc=True).to_numpy()).all()


def test_sqlite_view_returns_expected_rows(sb):
    url = sb.env["FUNDX_MEDICAL_INSURANCE_DB_URL"]
    assert url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).is_relative_to(sb.home)
    expected = sb.expected("medical_insurance.bills")
    t = expected["settled_at"]
    start, end = t.iloc[len(t) // 4].to_pydatetime(), t.iloc[3 * len(t) // 4].to_pydatetime()
    local = "%Y-%m-%d %H:%M:%S"
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        got = pd.read_sql_query(
            "SELECT * FROM v_settled_bills WHERE settled_at >= ? AND settled_at < ? ORDER BY settled_at, bill_id",
            conn, params=(start.astimezone(SHANGHAI).strftime(local), end.astimezone(SHANGHAI).strftime(local)),
        )
        assert list(got.columns) == list(feed_schema("medical_insurance.bills").columns)
        _bills_equal(got, sb.expected("medical_insurance.bills", start, end))
        assert len(got) > 10
    with armed(sb, "medical_insurance", ["renamed_column", "slow"]):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            began = time.monotonic()
            cols = conn.exec_driver_sql("SELECT * FROM v_settled_bills LIMIT 1").keys()
            assert time.monotonic() - began >= 0.1
        assert "id_no" in cols and "id_number" not in cols
        engine.dispose()
    with armed(sb, "medical_insurance", ["empty"]), sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        assert conn.execute("SELECT count(*) FROM v_settled_bills").fetchone() == (0,)


@pytest.mark.postgres
def test_postgres_view_returns_expected_rows(pg_url, city, tmp_path):
    with Sandbox(tmp_path / "pg", city=city, medical_db_url=pg_url, faults={"medical_insurance": ["slow"]}) as pg:
        url = pg.env["FUNDX_MEDICAL_INSURANCE_DB_URL"]
        engine = sa.create_engine(url)
        expected = pg.expected("medical_insurance.bills")
        t = expected["settled_at"]
        start, end = t.iloc[len(t) // 4].to_pydatetime(), t.iloc[3 * len(t) // 4].to_pydatetime()
        with engine.connect() as conn:
            began = time.monotonic()
            got = pd.read_sql_query(
                sa.text("SELECT * FROM v_settled_bills WHERE settled_at >= :s AND settled_at < :e "
                        "ORDER BY settled_at, bill_id"), conn, params={"s": start, "e": end})
            assert time.monotonic() - began >= 0.2
            kinds = dict(conn.exec_driver_sql(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'sandbox_medical' AND table_name = 'v_settled_bills'").all())
        assert kinds["settled_at"] == "timestamp with time zone" and kinds["total_amount"] == "numeric"
        _bills_equal(got, pg.expected("medical_insurance.bills", start, end))
        pg.set_faults("medical_insurance", ["renamed_column"])
        with engine.connect() as conn:
            assert "id_no" in conn.exec_driver_sql("SELECT * FROM v_settled_bills LIMIT 1").keys()  # noqa: SIM118 - a Result
        engine.dispose()
    with sa.create_engine(pg_url).connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'sandbox_medical'").scalar() == 0


# -- the office's own database -------------------------------------------------------------------------


def test_office_database(sb, city):
    """The office's system is a database agency: its five feeds are views of one database (mode 0600) at
    FUNDX_SOCIAL_INSURANCE_DB_URL, serving the generated office feeds with their history; there is no
    other office database to read (FUNDX_OFFICE_DB_URL is gone)."""
    from sandbox.city import OFFICE_FEEDS

    path = sb.home / "social_insurance" / "office.db"
    assert sb.env["FUNDX_SOCIAL_INSURANCE_DB_URL"] == f"sqlite:///{path}" and path.is_absolute()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "FUNDX_OFFICE_DB_URL" not in sb.env and "office_db" not in json.loads((sb.home / "sandbox.json").read_text())
    assert set(OFFICE_FEEDS) <= set(sb.feeds) and set(registry().agencies["social_insurance"]) == set(OFFICE_FEEDS)
    engine = sa.create_engine(sb.env["FUNDX_SOCIAL_INSURANCE_DB_URL"], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            for feed in OFFICE_FEEDS:
                config = registry().feed(feed).database
                frame = city.office[feed]
                got = pd.read_sql_query(f"SELECT * FROM {config.relation} ORDER BY {', '.join(config.order_by)}", conn)
                assert list(got.columns) == list(frame.columns), feed
                assert len(got) == len(frame) > 0, feed
            # the ledger: every month paid, after a death too for the planted cases
            ledger = pd.read_sql_query("SELECT id_number, month FROM v_benefit_payments", conn)
            for case in city.truths["dead_but_paid"]:
                months = set(ledger.loc[ledger["id_number"] == case["id_number"], "month"])
                assert case["paid_through"] in months and any(m > case["death_date"][:7] for m in months), case
    finally:
        engine.dispose()


# -- the serve command --------------------------------------------------------------------------------


def test_serve_runs_until_sigterm(tmp_path):
    home = tmp_path / "served"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "serve", "--home", str(home), "--people", "300",
         "--faults", "police=slow"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "sandbox.json").is_file():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        state = json.loads((home / "sandbox.json").read_text())
        assert state["pid"] == proc.pid and state["faults"]["police"] == ["slow"]
        assert requests.get(state["control_url"] + "/health", timeout=5).json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert not (home / "sandbox.json").exists() and not (home / "exchange.env").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(state["control_url"] + "/health", timeout=2)
