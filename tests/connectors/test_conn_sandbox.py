"""Every connector against the live sandbox agencies: exact rows, windows, every fault profile, secrets.

The sandbox (sandbox/agencies.py) serves real HTTP on loopback, real files and a real SQLite
database; ``Sandbox.expected`` is the ground truth of what each agency serves in a window.
Transient REST faults fire from the 2nd page request on, so fault tests use smaller pages.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta

import pandas as pd
import pytest

from connectors import build_connector, connector_for, feed_names, load_feed
from connectors.base import Connector
from contracts import load_contract
from fundx.core.errors import AuthError, DeadlineExceeded, PermanentError, SourceSchemaError
from fundx.core.settings import reload_settings
from fundx.core.timeutil import Window, aware
from sandbox.agencies import Sandbox
from sandbox.faults import RENAMED_IN_VIEWS

FEEDS = feed_names()
AGENCY = {feed: load_feed(feed).agency for feed in FEEDS}
REST_FEEDS = [f for f in FEEDS if load_feed(f).transport == "rest"]
DROP_FEEDS = [f for f in FEEDS if load_feed(f).transport == "filedrop"]
#: the column each agency's ``renamed_column`` fault renames (docs/agencies.md): its identity numbers (a feed
#: about employers only: its credit codes)
IDENTITY_COLUMN = {f: min((c.pii != "identity_number", c.name) for c in load_contract(load_feed(f).contract).columns
                       if c.name in RENAMED_IN_VIEWS)[1] for f in FEEDS}
#: snapshot feeds: one key appears in every file of its period, so windows cannot partition keys
SNAPSHOT_FEEDS = {"justice.prisoners"}
SPLIT = aware("2026-06-01")
#: rows per page in fault tests: about five pages per feed of this sandbox (others: 50)
PAGE = {"market_regulation.businesses": 250}


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    """One sandbox of 20,000 people for the module, its endpoints and credentials in the environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNDX_RETRY_BASE_DELAY", "0.01")
        mp.setenv("FUNDX_RETRY_MAX_DELAY", "1")
        mp.setenv("FUNDX_HTTP_READ_TIMEOUT", "1")
        with sandbox_factory("connectors", people=20_000, stall_seconds=2) as sb:
            for name, value in sb.env.items():
                mp.setenv(name, value)
            reload_settings()
            yield sb
    reload_settings()


@pytest.fixture
def faults(sandbox):
    """Arm faults at one agency for one test; disarmed afterwards."""
    armed: list[str] = []

    def arm(agency: str, names: list[str]) -> None:
        armed.append(agency)
        sandbox.set_faults(agency, names)

    yield arm
    for agency in armed:
        sandbox.set_faults(agency, [])


def full_window(sb: Sandbox) -> Window:
    return Window.of("2020-01-01", sb.as_of + timedelta(days=1))


def small_pages(feed: str, size: int | None = None) -> Connector:
    """The feed's connector with ``size`` rows per page (REST), so that a pull takes several pages."""
    config = load_feed(feed)
    if config.rest is not None:
        paging = config.rest.paging.model_copy(update={"page_size": size or PAGE.get(feed, 50)})
        config = config.model_copy(update={"rest": config.rest.model_copy(update={"paging": paging})})
    return build_connector(config, reload_settings())


def plain(frame: pd.DataFrame, key: str) -> list[dict]:
    """Rows as dicts of str/None, sorted by key, for exact comparison."""
    frame = frame.sort_values(key, kind="stable").reset_index(drop=True).astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def assert_exact(feed: str, pulled: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The pull holds exactly the rows the agency serves: same keys, no repeats, same values."""
    key = load_feed_contract_key(feed)
    assert list(pulled.columns) == list(expected.columns)
    assert pulled[key].is_unique
    assert len(pulled) == len(expected)
    assert set(pulled[key]) == set(expected[key])
    if feed == "medical_insurance.bills":  # typed values from SQLite: amounts as numbers, times as local text
        merged = pulled.merge(expected, on=key, suffixes=("", "_expected"))
        assert (merged["total_amount"].astype(float) - merged["total_amount_expected"]).abs().max() < 0.005
        local = merged["settled_at_expected"].dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m-%d %H:%M:%S")
        assert (merged["settled_at"] == local).all()
    elif feed == "justice.prisoners":
        got, want = plain(pulled, key), plain(expected, key)
        for mine, theirs in zip(got, want):
            if _excel_number(theirs["id_number"]):
                # an id Excel made a number: handed on as str() of the number the file holds. The
                # file holds 16 significant digits (openpyxl), the generator's text may have 17.
                assert mine["id_number"] == str(float(mine["id_number"]))
                assert float(mine["id_number"]) == pytest.approx(float(theirs["id_number"]), rel=1e-15)
                mine, theirs = {**mine, "id_number": None}, {**theirs, "id_number": None}
            assert mine == theirs
    else:
        assert plain(pulled, key) == plain(expected, key)


def _excel_number(value: object) -> bool:
    import re

    return isinstance(value, str) and re.fullmatch(r"\s*\d(?:\.\d+)?[eE]\+?\d+\s*", value) is not None


def load_feed_contract_key(feed: str) -> str:
    from contracts import load_contract

    return load_contract(feed).key[0]


# --- whole window and adjacent windows ---------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
def test_full_window_pulls_exactly_what_the_agency_serves(sandbox, feed):
    window = full_window(sandbox)
    seen: list[int] = []
    pull = connector_for(feed, reload_settings()).extract(window, progress=seen.append)
    expected = sandbox.expected(feed, window.start, window.end)
    assert len(expected) > 0
    assert_exact(feed, pull.frame, expected)
    assert pull.rows == len(expected) and pull.feed == feed and pull.window == window
    assert pull.digest.startswith("sha256:") and pull.pages >= 1 and pull.bytes > 0
    assert seen and seen == sorted(seen) and seen[-1] >= pull.rows


@pytest.mark.parametrize("feed", FEEDS)
def test_adjacent_windows_partition_the_rows(sandbox, feed):
    whole = full_window(sandbox)
    before, after = Window(whole.start, SPLIT), Window(SPLIT, whole.end)
    connector = small_pages(feed)
    first, second = connector.extract(before), connector.extract(after)
    assert_exact(feed, first.frame, sandbox.expected(feed, before.start, before.end))
    assert_exact(feed, second.frame, sandbox.expected(feed, after.start, after.end))
    if feed in SNAPSHOT_FEEDS:
        return  # each window holds its own snapshots; a prisoner may be in both
    key = load_feed_contract_key(feed)
    assert not set(first.frame[key]) & set(second.frame[key])
    assert first.rows + second.rows == connector.extract(whole).rows


def test_rerun_gives_the_same_digest(sandbox):
    window = full_window(sandbox)
    connector = small_pages("market_regulation.businesses", 100)
    assert connector.extract(window).digest == connector.extract(window).digest


# --- fault profiles ----------------------------------------------------------------------------

REST_TRANSIENT = ["server_errors", "slow", "read_timeout", "reset", "truncated", "page_twice", "rate_limit"]


@pytest.mark.parametrize("fault", REST_TRANSIENT)
@pytest.mark.parametrize("feed", REST_FEEDS)
def test_rest_transient_fault_ends_with_every_row(sandbox, faults, feed, fault):
    window = full_window(sandbox)
    connector = small_pages(feed)
    faults(AGENCY[feed], [fault])
    pull = connector.extract(window)
    assert_exact(feed, pull.frame, sandbox.expected(feed, window.start, window.end))
    assert pull.pages >= 2
    if fault != "slow":
        assert pull.retries >= 1


@pytest.mark.parametrize("feed", REST_FEEDS)
def test_rest_trickling_agency_fails_the_pull_at_its_deadline_and_lifted_every_row_arrives(sandbox, faults, feed,
                                                                                         monkeypatch):
    window = full_window(sandbox)
    monkeypatch.setenv("FUNDX_HTTP_READ_TIMEOUT", "5")  # a byte a second never trips it
    monkeypatch.setenv("FUNDX_HTTP_REQUEST_DEADLINE", "0.5")
    monkeypatch.setenv("FUNDX_PULL_DEADLINE", "1.5")
    faults(AGENCY[feed], ["trickle"])
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        small_pages(feed).extract(window)
    assert time.monotonic() - started < 1.5 + 10  # bounded by the deadline (the margin only catches a hang)
    assert info.value.feed == feed and "FUNDX_PULL_DEADLINE" in str(info.value)
    faults(AGENCY[feed], [])
    monkeypatch.delenv("FUNDX_PULL_DEADLINE")  # the default: a pull under load is never near it
    pull = small_pages(feed).extract(window)
    assert_exact(feed, pull.frame, sandbox.expected(feed, window.start, window.end))


@pytest.mark.parametrize("feed", DROP_FEEDS)
def test_truncated_drop_file_is_read_once_restored(sandbox, faults, feed):
    # the fault cuts the newest file short: the as-of month's, delivered now when it has rows
    # (a registration date no earlier month can take), so the window reaches past now
    window = Window.of("2020-01-01", date.today() + timedelta(days=2))
    faults(AGENCY[feed], ["truncated"])
    pull = connector_for(feed, reload_settings()).extract(window)
    assert_exact(feed, pull.frame, sandbox.expected(feed, window.start, window.end))
    assert pull.retries >= 1


def test_slow_database_still_pulls_every_row(sandbox, faults):
    window = full_window(sandbox)
    faults("medical_insurance", ["slow"])
    pull = connector_for("medical_insurance.bills", reload_settings()).extract(window)
    assert_exact("medical_insurance.bills", pull.frame, sandbox.expected("medical_insurance.bills", window.start, window.end))


def test_several_transient_faults_at_once(sandbox, faults, monkeypatch):
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "10")  # they all fire on the 2nd page: 7 failures in a row
    window = full_window(sandbox)
    faults("police", ["server_errors", "rate_limit", "page_twice", "reset"])
    pull = small_pages("police.deaths", 20).extract(window)
    assert_exact("police.deaths", pull.frame, sandbox.expected("police.deaths", window.start, window.end))
    assert pull.retries >= 7


@pytest.mark.parametrize("feed", FEEDS)
def test_renamed_column_is_a_source_schema_error_naming_feed_and_column(sandbox, faults, feed):
    faults(AGENCY[feed], ["renamed_column"])
    expected = sandbox.expected(feed, *_bounds(full_window(sandbox)))
    with pytest.raises(SourceSchemaError) as info:
        connector_for(feed, reload_settings()).extract(full_window(sandbox))
    text = f"{info.value} {info.value.action}"
    assert str(info.value).startswith(f"{feed}: ")
    assert IDENTITY_COLUMN[feed] in text
    assert info.value.feed == feed
    for value in expected[IDENTITY_COLUMN[feed]].dropna().head(50):
        assert str(value) not in text


@pytest.mark.parametrize(
    ("feed", "renew"),
    [
        ("civil_affairs.deaths", "FUNDX_CIVIL_AFFAIRS_TOKEN"),
        ("market_regulation.businesses", "FUNDX_MARKET_REGULATION_API_KEY"),
    ],
)
def test_rejected_static_credentials_are_an_auth_error_naming_what_to_renew(sandbox, faults, caplog, feed, renew):
    faults(AGENCY[feed], ["expired_token"])
    secret = sandbox.env[renew]
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        small_pages(feed).extract(full_window(sandbox))
    error = info.value
    assert error.feed == feed and renew in error.action
    for text in (str(error), error.action, repr(error), caplog.text):
        assert secret not in text


def test_police_expired_token_is_refreshed_once_and_every_row_arrives(sandbox, faults):
    window = full_window(sandbox)
    faults("police", ["expired_token"])
    pull = small_pages("police.deaths").extract(window)
    assert_exact("police.deaths", pull.frame, sandbox.expected("police.deaths", window.start, window.end))


def test_police_wrong_client_secret_names_the_variable_and_never_the_secret(sandbox, monkeypatch, caplog):
    wrong = "not-the-secret-" + "x7Qp" * 8
    monkeypatch.setenv("FUNDX_POLICE_CLIENT_SECRET", wrong)
    real = sandbox.env["FUNDX_POLICE_CLIENT_SECRET"]
    connector = connector_for("police.deaths", reload_settings())
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        connector.extract(full_window(sandbox))
    error = info.value
    assert "renew FUNDX_POLICE_CLIENT_SECRET" in error.action
    assert "invalid_client" in str(error)
    for text in (str(error), error.action, repr(error), repr(connector), caplog.text):
        assert wrong not in text and real not in text


def test_police_token_still_rejected_after_refresh_is_an_auth_error(sandbox, monkeypatch, caplog):
    # the agency issues tokens that are already expired: the page answers 401 even after a refresh
    monkeypatch.setattr(sandbox._rest["police.deaths"], "token_lifetime", -1)
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        connector_for("police.deaths", reload_settings()).extract(full_window(sandbox))
    assert "after fetching a new token" in str(info.value)
    assert "renew FUNDX_POLICE_CLIENT_SECRET" in info.value.action
    assert sandbox.env["FUNDX_POLICE_CLIENT_SECRET"] not in caplog.text + str(info.value)


@pytest.mark.parametrize("feed", FEEDS)
def test_empty_is_zero_rows_not_a_failure(sandbox, faults, feed):
    faults(AGENCY[feed], ["empty"])
    pull = connector_for(feed, reload_settings()).extract(full_window(sandbox))
    assert pull.rows == 0 and len(pull.frame) == 0
    assert list(pull.frame.columns) == list(sandbox.expected(feed).columns)


# --- where things are missing -------------------------------------------------------------------


def test_unreachable_agency_is_transient_after_the_configured_tries(sandbox, monkeypatch):
    from fundx.core.errors import TransientError

    monkeypatch.setenv("FUNDX_CIVIL_AFFAIRS_URL", "http://127.0.0.1:9")  # discard port: connection refused
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "2")
    with pytest.raises(TransientError) as info:
        connector_for("civil_affairs.deaths", reload_settings()).extract(full_window(sandbox))
    assert "after 2 tries" in str(info.value)
    assert "reported_from" not in str(info.value)  # no query string in messages


def test_wrong_path_is_not_found(sandbox):
    from fundx.core.errors import NotFoundError

    config = load_feed("civil_affairs.deaths")
    config = config.model_copy(update={"rest": config.rest.model_copy(update={"path": "/api/v9/nothing"})})
    with pytest.raises(NotFoundError):
        build_connector(config, reload_settings()).extract(full_window(sandbox))


def test_missing_relation_is_not_found(sandbox):
    from fundx.core.errors import NotFoundError

    config = load_feed("medical_insurance.bills")
    config = config.model_copy(update={"database": config.database.model_copy(update={"relation": "v_nothing"})})
    with pytest.raises(NotFoundError, match="v_nothing"):
        build_connector(config, reload_settings()).extract(full_window(sandbox))


def test_missing_environment_variable_is_a_configuration_error(sandbox, monkeypatch, tmp_path):
    from fundx.core.errors import ConfigurationError

    monkeypatch.delenv("FUNDX_JUSTICE_DROP")
    monkeypatch.setenv("FUNDX_SANDBOX_HOME", str(tmp_path))  # no exchange.env to fall back on
    with pytest.raises(ConfigurationError, match="FUNDX_JUSTICE_DROP"):
        connector_for("justice.prisoners", reload_settings()).extract(full_window(sandbox))
    assert isinstance(ConfigurationError("x"), PermanentError)


def _bounds(window: Window):
    return window.start, window.end


def test_body_larger_than_the_cap_is_refused_with_the_setting_to_change(sandbox, monkeypatch):
    from fundx.core.errors import ConfigurationError

    monkeypatch.setenv("FUNDX_MAX_RESPONSE_BYTES", "2000")
    with pytest.raises(ConfigurationError) as info:
        connector_for("market_regulation.businesses", reload_settings()).extract(full_window(sandbox))
    assert "FUNDX_MAX_RESPONSE_BYTES" in info.value.action and "page_size" in info.value.action
