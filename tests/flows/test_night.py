"""Whole nights through Prefect against the live sandbox: counts, failure isolation, reruns, sealed
batches handed to the stages and acknowledged, no plain PII anywhere."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from testkit import ONE_OF_EACH

from connectors.registry import registry
from fundx.core.errors import NightFailed
from fundx.core.settings import reload_settings
from fundx.core.timeutil import aware
from fundx.ledger import Ledger

pytestmark = pytest.mark.prefect

#: every feed of the feed configs (connectors.registry), sorted
FEEDS = registry().names
#: feed -> the stage it delivers to
STAGES = {feed: registry().stage_of(feed) for feed in FEEDS}
#: the nights of the tests whose point is not every feed (one agency failing, the service levels, the umask)
SOME = list(ONE_OF_EACH)


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("night", people=3000, stall_seconds=2.0) as sb:
        yield sb


@pytest.fixture
def night_env(sandbox, monkeypatch, tmp_path, keys_dir):
    """Endpoints of the sandbox, an exchange home (inboxes, acks, stages) and a ledger of this test's own."""
    for key, value in sandbox.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("FUNDX_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    monkeypatch.setenv("FUNDX_HTTP_READ_TIMEOUT", "1")
    reload_settings()
    yield Ledger.from_settings()
    for agency in registry().agencies:
        sandbox.set_faults(agency, [])
    reload_settings()


END = "2026-11-23T00:00:00+08:00"


def _expected(sandbox, feed: str) -> int:
    return len(sandbox.expected(feed, aware("2020-01-01"), aware(END)))


def _receive_everything() -> dict[str, list[str]]:
    """What `fundx stage receive --all` does: every stage takes its batches; the exchange records the answers."""
    from fundx.exchange.acks import record_acks
    from fundx.stage import Stage, stages_with_inboxes

    outcomes = {stage: [r.outcome for r in Stage(stage).receive()] for stage in stages_with_inboxes()}
    record_acks()
    return outcomes


def _watermarks_moved_only_with_deliveries(ledger: Ledger) -> None:
    """Every pull with rows has exactly one delivery, and every watermark rests on a recorded pull."""
    delivered = {d.pull_id: d for d in ledger.deliveries()}
    for p in ledger.pulls(limit=1000):
        if p.outcome == "pulled" and p.rows:
            d = delivered.get(p.id)
            assert d is not None or any(x.digest == p.digest and x.window == p.window for x in delivered.values()), p
    with ledger.engine.connect() as conn:
        from fundx.ledger.schema import pulls, watermarks

        for mark in conn.execute(watermarks.select()).mappings():
            pull = conn.execute(pulls.select().where(pulls.c.id == mark["pull_id"])).mappings().one()
            assert pull["outcome"] == "pulled" and pull["window_end"] == mark["value"]
            assert not pull["rows"] or pull["id"] in delivered


def test_the_feeds_partial_nights_name_cover_every_transport_and_stage():
    reg = registry()
    assert set(SOME) <= set(FEEDS) and SOME[0] == "civil_affairs.deaths" and "police.deaths" in SOME
    assert {reg.feed(f).transport for f in SOME} == {reg.feed(f).transport for f in FEEDS}
    assert {reg.stage_of(f) for f in SOME} == set(reg.stages)
    assert "social_insurance" in {reg.agency_of(f) for f in SOME}  # the office's database too


def test_a_night_pulls_every_feed_and_a_rerun_pulls_nothing_new(sandbox, night_env):
    from flows.exchange import nightly_exchange

    outcomes = {o.feed: o for o in nightly_exchange(end=END)}
    assert sorted(outcomes) == list(FEEDS)
    for feed, outcome in outcomes.items():
        assert outcome.outcome == "pulled", feed
        assert outcome.rows == _expected(sandbox, feed) > 0, feed
        assert outcome.valid + outcome.quarantined == outcome.rows and outcome.valid > 0, feed
        assert outcome.digest.startswith("sha256:")
        assert (outcome.handoff, outcome.stage, outcome.parts) == ("delivered", STAGES[feed], 1), feed
    marks = night_env.watermarks()
    assert {feed: marks[feed] for feed in FEEDS} == {feed: aware(END) for feed in FEEDS}
    home = reload_settings().home
    for feed, stage in STAGES.items():  # sealed batches wait in each stage's inbox, READY
        (batch,) = [p for p in (home / "inboxes" / stage).iterdir() if p.name.startswith(feed)]
        assert (batch / "READY").is_file() and (batch / "part-0001-of-0001.p7m").is_file()
    assert {d.status for d in night_env.deliveries()} == {"ready"}

    received = _receive_everything()
    assert received == {stage: ["received"] * len(registry().feeds_of(stage)) for stage in registry().stages}
    assert len(received["death_matching"]) >= 4  # civil affairs, police, religious affairs, hospitals
    deliveries = night_env.deliveries()
    assert len(deliveries) == len(FEEDS) and {d.status for d in deliveries} == {"acknowledged"}
    counts = night_env.delivery_counts()
    for feed in FEEDS:
        assert counts[feed]["delivered"] == counts[feed]["acknowledged"] == 1, feed
        assert counts[feed]["rows"] == outcomes[feed].valid and counts[feed]["refused"] == 0, feed
    assert len(night_env.ack_records(outcome="received")) == len(FEEDS)

    again = nightly_exchange(end=END)
    not_empty = [(o.feed, o.outcome, o.rows, o.handoff) for o in again
                 if not (o.outcome == "pulled" and o.rows == 0 and o.handoff == "empty")]
    assert not not_empty
    assert night_env.last_runs(1)[0]["outcome"] == "completed"
    assert len(night_env.deliveries()) == len(FEEDS) and _receive_everything() == {s: [] for s in received}
    _watermarks_moved_only_with_deliveries(night_env)
    assert night_env.verify_audit().ok
    _reports_and_artifacts(home, night_env, outcomes)
    _quarantine_is_what_the_generator_planted(sandbox, night_env)


def _reports_and_artifacts(home: Path, ledger: Ledger, outcomes: dict) -> None:
    """The night's Data Docs page per feed, its counts in the ledger, and a table artifact per feed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from fundx.exchange import quarantine

    night = ledger.last_runs(2)[1]["night"]
    folder = home / "reports" / night
    assert {p.name for p in folder.glob("*.html")} == {"index.html"} | {f"{feed}.html" for feed in FEEDS}
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert all(feed in index for feed in FEEDS) and "id_number.valid" in index
    kept = {q.feed: q for q in quarantine.batches(ledger, night=night)}
    for feed, outcome in outcomes.items():
        if outcome.quarantined:
            assert (kept[feed].quarantined, kept[feed].valid, kept[feed].held) == (outcome.quarantined, outcome.valid, False)
            per_rule = quarantine.rule_counts(ledger, batch_id=kept[feed].batch_id)
            assert per_rule and max(r["failed"] for r in per_rule) <= outcome.quarantined
        else:
            assert feed not in kept
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="contract-")))
    assert {a.key for a in found} >= {"contract-" + re.sub(r"[^a-z0-9-]+", "-", f) for f in FEEDS}


def _quarantine_is_what_the_generator_planted(sandbox, ledger: Ledger) -> None:
    """The night's quarantine per feed: exactly the generator's planted invalid rows, each with its rules."""
    from contracts import load_contract
    from fundx.exchange import quarantine

    planted: dict[str, dict[str, str]] = {}
    for m in sandbox.city.truths["invalid"]:
        planted.setdefault(m["feed"], {})[m["key"]] = ";".join(m["rules"])
    kept = {q.feed: q for q in quarantine.batches(ledger)}
    with_planted = 0
    for feed in FEEDS:
        key = load_contract(feed).key[0]
        served = set(sandbox.expected(feed, aware("2020-01-01"), aware(END))[key])
        expected = {k: rules for k, rules in planted.get(feed, {}).items() if k in served}
        rows = quarantine.read_rows(ledger, kept[feed].batch_id) if feed in kept else None
        found = {} if rows is None else {
            k: ";".join(sorted(r.split(";"))) for k, r in zip(rows[key], rows[quarantine.RULES])}
        assert found == expected, feed
        with_planted += bool(expected)
    assert with_planted >= 4  # a feed of fewer than 10 rows gets none


def test_one_agency_failing_does_not_stop_the_others_and_a_rerun_pulls_only_what_is_missing(sandbox, night_env):
    from flows.exchange import nightly_exchange

    sandbox.set_faults("civil_affairs", ["expired_token"])
    sandbox.set_faults("police", ["server_errors", "page_twice"])
    with pytest.raises(NightFailed) as failed:
        nightly_exchange(feeds=SOME, end=END)
    message = str(failed.value)
    assert "civil_affairs.deaths" in message and "AuthError" in message
    assert "FUNDX_CIVIL_AFFAIRS_TOKEN" in message  # what to do names the setting
    run = night_env.last_runs(1)[0]
    assert (run["outcome"], run["feeds"], run["feeds_failed"]) == ("failed", len(SOME), 1)
    pulled = {p.feed: p for p in night_env.pulls_of_run(run["id"])}
    assert pulled["civil_affairs.deaths"].outcome == "failed"
    assert pulled["police.deaths"].rows == _expected(sandbox, "police.deaths")
    for feed in SOME[1:]:  # every other transport and stage delivered
        assert pulled[feed].outcome == "pulled" and pulled[feed].rows == _expected(sandbox, feed) > 0, feed
    assert "civil_affairs.deaths" not in night_env.watermarks()
    assert not night_env.deliveries("civil_affairs.deaths")  # nothing handed over, nothing moved
    assert len(night_env.deliveries()) == len(SOME) - 1

    sandbox.set_faults("civil_affairs", [])
    rerun = {o.feed: o for o in nightly_exchange(feeds=SOME, end=END)}
    assert sorted(rerun) == sorted(SOME)
    assert rerun["civil_affairs.deaths"].rows == _expected(sandbox, "civil_affairs.deaths")
    assert rerun["civil_affairs.deaths"].handoff == "delivered"
    assert all(o.rows == 0 for f, o in rerun.items() if f != "civil_affairs.deaths")
    assert len(night_env.deliveries()) == len(SOME)
    _watermarks_moved_only_with_deliveries(night_env)


def test_a_trickling_agency_fails_at_its_pull_deadline_and_the_other_feeds_deliver(sandbox, night_env, monkeypatch):
    """One agency answering a byte a second (each read well inside the read timeout) holds its feed to
    FUNDX_PULL_DEADLINE: that feed fails with DeadlineExceeded, nothing of it is delivered and its watermark
    stays; the feeds after it deliver. Lifted, the rerun delivers it."""
    from flows.exchange import nightly_exchange

    monkeypatch.setenv("FUNDX_HTTP_READ_TIMEOUT", "5")
    monkeypatch.setenv("FUNDX_HTTP_REQUEST_DEADLINE", "1")
    monkeypatch.setenv("FUNDX_PULL_DEADLINE", "8")
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "20")  # so that the pull's deadline, not the tries, stops it
    reload_settings()
    feeds = ["police.deaths", "civil_affairs.deaths", "market_regulation.businesses", "medical_insurance.bills"]
    sandbox.set_faults("civil_affairs", ["trickle"])
    with pytest.raises(NightFailed) as failed:
        nightly_exchange(feeds=feeds, end=END)
    message = str(failed.value)
    assert "1 of 4 feeds failed: civil_affairs.deaths (DeadlineExceeded:" in message and "FUNDX_PULL_DEADLINE" in message
    run = night_env.last_runs(1)[0]
    assert (run["outcome"], run["feeds"], run["feeds_failed"]) == ("failed", 4, 1)
    pulled = {p.feed: p for p in night_env.pulls_of_run(run["id"])}
    trickled = pulled["civil_affairs.deaths"]
    assert (trickled.outcome, trickled.error_type) == ("failed", "DeadlineExceeded")
    assert "deadline of 8 s (FUNDX_PULL_DEADLINE)" in trickled.error_message
    assert trickled.duration_s < 8 + 30  # bounded by its deadline (the margin only catches a hang)
    for feed in ("police.deaths", "market_regulation.businesses", "medical_insurance.bills"):
        assert pulled[feed].outcome == "pulled" and pulled[feed].rows == _expected(sandbox, feed) > 0, feed
        assert night_env.watermarks()[feed] == aware(END), feed
    assert "civil_affairs.deaths" not in night_env.watermarks()
    assert not night_env.deliveries("civil_affairs.deaths")  # nothing handed over, nothing moved
    assert len(night_env.deliveries()) == 3

    sandbox.set_faults("civil_affairs", [])
    rerun = {o.feed: o for o in nightly_exchange(feeds=feeds, end=END)}
    assert rerun["civil_affairs.deaths"].rows == _expected(sandbox, "civil_affairs.deaths")
    assert rerun["civil_affairs.deaths"].handoff == "delivered"
    assert all(o.rows == 0 for f, o in rerun.items() if f != "civil_affairs.deaths")
    _watermarks_moved_only_with_deliveries(night_env)


ID_CANDIDATE = re.compile(rb"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9])")  # first-generation ones too


def _identity_numbers(city) -> set[bytes]:
    found: set[bytes] = set()
    frames = [city.roll, *city.feeds.values()]
    for frame in frames:
        for column in frame.columns:
            if "id_number" in column:
                found.update(str(v).strip().upper().encode() for v in frame[column].dropna())
    return {v for v in found if len(v) == 18 or (len(v) == 15 and v.isdigit())}


def test_no_identity_number_in_plain_text_after_nights(sandbox, night_env, run_dir, caplog):
    """Every file under FUNDX_HOME (ledger, inboxes, acks, the stages' received and refused batches),
    the Prefect home and this run's logs: no generated identity number."""
    from flows.exchange import nightly_exchange

    sandbox.set_faults("market_regulation", ["renamed_column"])
    with pytest.raises(NightFailed):
        nightly_exchange(end=END)
    sandbox.set_faults("market_regulation", [])
    _receive_everything()
    nightly_exchange(end=END)
    settings = reload_settings()
    # The night's one batch stays in its inbox; a copy put into the wrong inbox is refused and set aside.
    (waiting,) = (settings.home / "inboxes" / "employer_review").iterdir()
    shutil.copytree(waiting, settings.home / "inboxes" / "custody_matching" / waiting.name)
    from fundx.exchange.acks import record_acks
    from fundx.stage import Stage

    assert [r.outcome for r in Stage("custody_matching").receive()] == ["refused"]
    record_acks()
    for folder in ("inboxes", "acks", "stages", "reports", "quarantine"):
        assert any(p.is_file() for p in (settings.home / folder).rglob("*")), folder
    assert list((settings.home / "stages").glob("*/received/*/part-*.p7m"))
    assert list((settings.home / "stages").glob("*/refused/*/part-*.p7m"))

    known = _identity_numbers(sandbox.city)
    assert len(known) > 1000
    roots = [settings.home, Path(run_dir / "prefect"), Path(night_env.url.removeprefix("sqlite:///")).parent,
             Path(run_dir / "var")]
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


def test_a_night_started_under_umask_022_leaves_nothing_open_to_other_users(sandbox, night_env):
    """Issue 16 (files created from the umask: ledger.db was 0644, so other users could read the
    console's password hashes). A whole night through the nightly flow — what a Prefect worker runs —
    started under umask 022, then the stages' receive: every file and folder under FUNDX_HOME, and the
    ledger beside it, is the owner's only. The flow sets the umask itself (a worker may have been
    started with any umask); secret files have explicit modes as well."""
    import os
    import stat

    from flows.exchange import nightly_exchange

    old = os.umask(0o022)
    try:
        outcomes = nightly_exchange(feeds=SOME, end=END)
        _receive_everything()
        assert os.umask(0o022) == 0o077, "the flow set its process's umask"
    finally:
        os.umask(old)
    assert sorted(o.feed for o in outcomes) == sorted(SOME)
    assert all(o.outcome == "pulled" for o in outcomes) and sum(o.quarantined for o in outcomes) > 0
    home = reload_settings().home
    assert (home / "inboxes").is_dir()  # emptied by the stages, which keep what they took under stages/
    for folder in ("acks", "stages", "reports", "quarantine"):
        assert any(p.is_file() for p in (home / folder).rglob("*")), folder  # the night wrote there
    # the test's ledger lies beside FUNDX_HOME, with the feeds' lock files (Prefect's home is the test run's)
    base = Path(night_env.url.removeprefix("sqlite:///")).parent
    assert (base / "ledger.db-wal").is_file() and any((base / "locks").iterdir()) and home.parent == base
    walked = [base / "ledger.db", *base.glob("ledger.db-*"), base / "locks", *(base / "locks").iterdir(), home,
              *home.rglob("*")]
    loose = [f"{p.relative_to(base)} {stat.S_IMODE(p.lstat().st_mode):o}" for p in walked
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert len(walked) > 50 and loose == []


FUTURE_END = "2030-01-01T00:00:00+08:00"  # a night whose deadline has not passed: only failures are judged


def test_a_failing_agency_is_one_breach_with_one_notice_and_its_recovery_one_more(sandbox, night_env, receiver,
                                                                                  monkeypatch):
    from flows.exchange import nightly_exchange
    from fundx.sla import monitor

    notifier, got = receiver
    monkeypatch.setenv("FUNDX_NOTIFY", notifier.url)
    sandbox.set_faults("civil_affairs", ["expired_token"])
    with pytest.raises(NightFailed):
        nightly_exchange(feeds=SOME, end=FUTURE_END)
    opened = [(b["feed"], b["rule"]) for b in monitor.open_breaches(night_env)]
    assert ("civil_affairs.deaths", "failed") in opened
    civil = [(n["kind"], n["rule"]) for n in got if n["feed"] == "civil_affairs.deaths"]
    assert civil == [("breach", "failed")] and len(got) == len(opened)  # one notice per breach

    sandbox.set_faults("civil_affairs", [])
    nightly_exchange(feeds=SOME, end=FUTURE_END)  # the rerun of the same night delivers the feed: it recovers
    civil = [(n["kind"], n["rule"]) for n in got if n["feed"] == "civil_affairs.deaths" and n["rule"] == "failed"]
    assert civil == [("breach", "failed"), ("recovered", "failed")]
    assert ("civil_affairs.deaths", "failed") not in [(b["feed"], b["rule"]) for b in monitor.open_breaches(night_env)]
    (recorded,) = [b for b in monitor.breach_records(night_env) if b["feed"] == "civil_affairs.deaths"]
    assert recorded["status"] == "recovered" and recorded["notified_at"] and recorded["recovery_notified_at"]
