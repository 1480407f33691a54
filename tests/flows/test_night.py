"""Whole nights through Prefect against the live sandbox: counts, failure isolation, reruns, no plain PII."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fundx.errors import NightFailed
from fundx.ledger import Ledger
from fundx.settings import reload_settings
from fundx.timeutil import aware

pytestmark = pytest.mark.prefect

FEEDS = (
    "civil_affairs.deaths", "justice.prisoners", "market_regulation.businesses",
    "medical_insurance.bills", "police.deaths", "religious_affairs.deaths",
)


@pytest.fixture(scope="module")
def sandbox(run_dir):
    from sandbox.agencies import Sandbox

    with Sandbox(run_dir / "agencies-night", people=3000, stall_seconds=2.0) as sb:
        yield sb


@pytest.fixture
def night_env(sandbox, monkeypatch, tmp_path):
    """Endpoints of the sandbox and a ledger of this test's own."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUNDX_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("FUNDX_HTTP_READ_TIMEOUT", "1")
    reload_settings()
    yield Ledger.from_settings()
    for agency in ("civil_affairs", "police", "market_regulation", "religious_affairs", "justice", "medical_insurance"):
        sandbox.set_faults(agency, [])
    reload_settings()


END = "2026-11-23T00:00:00+08:00"


def _expected(sandbox, feed: str) -> int:
    return len(sandbox.expected(feed, aware("2020-01-01"), aware(END)))


def test_a_night_pulls_every_feed_and_a_rerun_pulls_nothing_new(sandbox, night_env):
    from flows.exchange import nightly_exchange

    outcomes = {o.feed: o for o in nightly_exchange(end=END)}
    assert sorted(outcomes) == list(FEEDS)
    for feed, outcome in outcomes.items():
        assert outcome.outcome == "pulled", feed
        assert outcome.rows == _expected(sandbox, feed) > 0, feed
        assert outcome.digest.startswith("sha256:")
    marks = night_env.watermarks()
    assert {feed: marks[feed] for feed in FEEDS} == {feed: aware(END) for feed in FEEDS}

    again = nightly_exchange(end=END)
    assert all(o.outcome == "pulled" and o.rows == 0 for o in again)
    assert night_env.last_runs(1)[0]["outcome"] == "completed"


def test_one_agency_failing_does_not_stop_the_others_and_a_rerun_pulls_only_what_is_missing(sandbox, night_env):
    from flows.exchange import nightly_exchange

    sandbox.set_faults("civil_affairs", ["expired_token"])
    sandbox.set_faults("police", ["server_errors", "page_twice"])
    with pytest.raises(NightFailed) as failed:
        nightly_exchange(end=END)
    message = str(failed.value)
    assert "civil_affairs.deaths" in message and "AuthError" in message
    assert "FUNDX_CIVIL_AFFAIRS_TOKEN" in message  # what to do names the setting
    run = night_env.last_runs(1)[0]
    assert (run["outcome"], run["feeds"], run["feeds_failed"]) == ("failed", 6, 1)
    pulled = {p.feed: p for p in night_env.pulls_of_run(run["id"])}
    assert pulled["civil_affairs.deaths"].outcome == "failed"
    assert pulled["police.deaths"].rows == _expected(sandbox, "police.deaths")
    assert "civil_affairs.deaths" not in night_env.watermarks()

    sandbox.set_faults("civil_affairs", [])
    rerun = {o.feed: o for o in nightly_exchange(end=END)}
    assert rerun["civil_affairs.deaths"].rows == _expected(sandbox, "civil_affairs.deaths")
    assert all(o.rows == 0 for f, o in rerun.items() if f != "civil_affairs.deaths")


ID_CANDIDATE = re.compile(rb"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")


def _identity_numbers(city) -> set[bytes]:
    found: set[bytes] = set()
    frames = [city.roll, *city.feeds.values()]
    for frame in frames:
        for column in frame.columns:
            if "id_number" in column:
                found.update(str(v).strip().upper().encode() for v in frame[column].dropna())
    return {v for v in found if len(v) == 18}


def test_no_identity_number_in_plain_text_after_nights(sandbox, night_env, run_dir, caplog):
    """Every file under FUNDX_HOME, the Prefect home and this run's logs: no generated identity number."""
    from flows.exchange import nightly_exchange

    sandbox.set_faults("market_regulation", ["renamed_column"])
    with pytest.raises(NightFailed):
        nightly_exchange(end=END)
    sandbox.set_faults("market_regulation", [])
    nightly_exchange(end=END)

    known = _identity_numbers(sandbox.city)
    assert len(known) > 1000
    settings = reload_settings()
    roots = [settings.home, Path(run_dir / "prefect"), Path(night_env.url.removeprefix("sqlite:///")).parent]
    hits, scanned = [], 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                data = path.read_bytes()
                hits += [f"{path.name}" for m in ID_CANDIDATE.findall(data) if m.upper() in known]
    logs = caplog.text.encode()
    hits += ["captured log" for m in ID_CANDIDATE.findall(logs) if m.upper() in known]
    assert scanned > 0
    assert hits == [], f"identity numbers in plain text in: {sorted(set(hits))}"
