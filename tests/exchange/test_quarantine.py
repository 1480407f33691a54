"""The stewards' quarantine against the live sandbox, without Prefect (the plain functions the flow runs).

Failing rows are sealed for the stewards and counted per rule in the ledger; a batch that breaks
its policy is held back whole; `fundx failures list/show/release/reject` work on them with masked
identities and audited decisions; released rows reach the stage with the next run exactly once,
even when that run is killed mid-delivery.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from killing import run_until_killed
from testkit import account
from typer.testing import CliRunner

from fundx.core.errors import BatchHeld, DecisionError, WrongRecipientError
from fundx.core.timeutil import aware
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.opening import open_sealed
from fundx.exchange import quarantine
from fundx.exchange.run import run_feed
from fundx.ledger import Ledger
from fundx.stage import Stage

FEED, STAGE, KEY = "police.deaths", "death_matching", "cancellation_id"
END = "2026-11-23T00:00:00+08:00"
ID = re.compile(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])")
runner = CliRunner()


@pytest.fixture(scope="module")
def sandbox(sandbox_factory):
    with sandbox_factory("quarantine", people=10_000) as sb:
        yield sb


def _spoiling(rows: int, column: str = "gender", value: str = "M"):
    """A pull that sets ``column`` of the first ``rows`` rows to ``value`` (an agency's mistake)."""
    from connectors import connector_for

    def pull(feed, window, **_options):
        pulled = connector_for(feed).extract(window)
        frame = pulled.frame.copy()
        frame.loc[frame.index[:rows], column] = value
        from fundx.core.digest import content_digest

        return dataclasses.replace(pulled, frame=frame, digest=content_digest(frame))

    return pull


def _received(home: Path) -> pd.DataFrame:
    key, cert = KeyStore(KeySettings()).stage_keys(STAGE)[0]
    frames = []
    for path in sorted((home / "stages" / STAGE / "received").glob("*/part-*.p7m")):
        opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert,
                             trusted_ca=KeyStore(KeySettings()).ca())
        frames.append(pq.read_table(io.BytesIO(opened.payload)).to_pandas())
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _expected_keys(sandbox) -> set[str]:
    return set(sandbox.expected(FEED, aware("2020-01-01"), aware(END))[KEY])


def test_failing_rows_are_sealed_for_the_stewards_and_counted_per_rule(sandbox, home):
    ledger = Ledger.from_settings()
    done = run_feed(FEED, end=END, pull=_spoiling(3))
    assert done.quarantined >= 3 and done.valid + done.quarantined == done.rows
    (kept,) = quarantine.batches(ledger, feed=FEED)
    assert (kept.batch_id, kept.quarantined, kept.valid, kept.held, kept.open) == (
        done.handoff.batch_id, done.quarantined, done.valid, False, done.quarantined)
    counts = {r["rule"]: r["failed"] for r in quarantine.rule_counts(ledger, batch_id=kept.batch_id)}
    assert counts["gender.allowed_values"] >= 3

    folder = home / "quarantine" / "stewards" / kept.batch_id
    parts = sorted(folder.glob("part-*.p7m"))
    assert parts and all(p.stat().st_mode & 0o777 == 0o600 for p in parts)
    assert not any(ID.search(p.read_bytes().decode("latin-1")) for p in parts)  # sealed, not plain Parquet
    rows = quarantine.read_rows(ledger, kept.batch_id)
    assert list(rows[quarantine.ROW]) == list(range(1, len(rows) + 1))
    assert (rows[quarantine.RULES].str.contains("gender.allowed_values")).sum() >= 3
    # a stage cannot open the stewards' quarantine
    stage_key, stage_cert = KeyStore(KeySettings()).stage_keys(STAGE)[0]
    with pytest.raises(WrongRecipientError, match="not sealed for certificate CN=.death_matching"):
        open_sealed(parts[0].read_bytes(), recipient_key=stage_key, recipient_cert=stage_cert,
                    trusted_ca=KeyStore(KeySettings()).ca())

    Stage(STAGE).receive()
    delivered = set(_received(home)[KEY])
    assert delivered | set(rows[KEY]) == _expected_keys(sandbox) and not delivered & set(rows[KEY])
    actions = [e["action"] for e in _audit(ledger)]
    assert "quarantine.recorded" in actions and ledger.verify_audit().ok


def _audit(ledger: Ledger) -> list[dict]:
    from fundx.ledger.schema import audit

    with ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(audit.select().order_by(audit.c.seq)).mappings()]


def test_stewards_list_show_release_and_reject_and_released_rows_go_out_once(sandbox, home):
    from fundx.cli import app

    ledger = Ledger.from_settings()
    first = run_feed(FEED, end=END, pull=_spoiling(3))
    batch = first.handoff.batch_id
    steward = account(ledger)  # the console account a steward decides under (its password checked)

    def invoke(*args: str):
        return runner.invoke(app, [*args, *steward["args"]], input=steward["input"])

    listed = json.loads(runner.invoke(app, ["failures", "list", "--json"]).output)
    (entry,) = listed
    assert (entry["batch"], entry["open"], entry["held"]) == (batch, first.quarantined, False)
    per_rule = {r["rule"]: (r["failed"], r["rows"]) for r in entry["rules"]}
    assert per_rule["gender.allowed_values"][0] >= 3 and per_rule["gender.allowed_values"][1] == first.rows

    shown = invoke("failures", "show", batch)
    assert shown.exit_code == 0, shown.output
    assert "gender.allowed_values" in shown.output and "********" in shown.output
    assert not ID.search(shown.output)  # identity numbers masked
    as_json = json.loads(invoke("failures", "show", batch, "--json", "--rule", "gender.allowed_values").output)
    assert len(as_json) >= 3 and all(r["state"] == "open" and "gender.allowed_values" in r["_rules"] for r in as_json)
    assert all(r["death_date"] == quarantine.HIDDEN for r in as_json if "death" not in r["_rules"])

    # bad decisions are refused and record nothing
    refused = invoke("failures", "release", batch, "--rows", "1", "--reason", "ok")
    assert refused.exit_code == 1 and "reason of at least" in refused.output
    some_id = str(sandbox.expected(FEED, aware("2020-01-01"), aware(END))["id_number"].iloc[0]).strip()
    leaky = invoke("failures", "release", batch, "--rows", "1", "--reason", f"it is {some_id} really")
    assert leaky.exit_code == 1 and "identity number" in leaky.output and some_id not in leaky.output
    assert invoke("failures", "release", batch, "--rows", "999", "--reason", "out of range").exit_code == 1
    assert quarantine.decisions_of(ledger, batch_id=batch) == []

    released = invoke("failures", "release", batch, "--rows", "1-2", "--reason", "agency confirmed by phone")
    assert released.exit_code == 0 and "2 rows (1-2)" in released.output and STAGE in released.output
    with pytest.raises(DecisionError, match=r"row\(s\) 2 of batch .* decided already"):
        quarantine.decide(ledger, batch, "reject", rows=[2, 3], reason="not a real gender code", actor="x")
    rejected = invoke("failures", "reject", batch, "--rows", "3", "--reason", "not a real gender code")
    assert rejected.exit_code == 0, rejected.output
    (release, reject) = quarantine.decisions_of(ledger, batch_id=batch)
    assert (release.action, release.rows, release.status, release.actor) == ("release", (1, 2), "pending", "steward-wang")
    assert (reject.action, reject.rows, reject.status) == ("reject", (3,), "done")
    audited = [e for e in _audit(ledger) if e["action"].startswith("failures.")]
    assert [e["action"] for e in audited] == ["failures.show", "failures.show", "failures.release", "failures.reject"]
    assert all(e["actor"] == "steward-wang" for e in audited)
    assert "agency confirmed by phone" in audited[2]["details"]

    chosen = quarantine.read_rows(ledger, batch).set_index(quarantine.ROW).loc[[1, 2], KEY]
    Stage(STAGE).receive()
    before = set(_received(home)[KEY])
    assert not before & set(chosen)

    later = run_feed(FEED, end="2026-11-24T00:00:00+08:00")  # the next run: nothing new, the release goes out
    assert [h.rows for h in later.released] == [2] and later.released[0].batch_id == f"{batch}-r{release.id}"
    assert run_feed(FEED, end="2026-11-25T00:00:00+08:00").released == ()  # once
    (receipt,) = Stage(STAGE).receive()
    assert (receipt.outcome, receipt.rows) == ("received", 2)
    after = _received(home)
    assert set(after[KEY]) == before | set(chosen) and after[KEY].is_unique
    assert quarantine.decisions_of(ledger, batch_id=batch)[0].status == "delivered"
    assert quarantine.batch(ledger, batch).open == first.quarantined - 3
    assert ledger.verify_audit().ok


def test_a_batch_over_its_policy_is_held_whole_and_can_be_released_whole(sandbox, home):
    ledger = Ledger.from_settings()
    expected = _expected_keys(sandbox)
    with pytest.raises(BatchHeld, match=r"held back whole for the stewards .*% of rows .* failed") as held:
        run_feed(FEED, end=END, pull=_spoiling(len(expected) // 2))
    assert "fundx failures show" in held.value.action
    (kept,) = quarantine.batches(ledger, feed=FEED)
    assert kept.held and kept.quarantined == kept.pulled == len(expected) and kept.valid == 0
    assert ledger.deliveries(FEED) == []  # nothing handed to the stage
    (pull,) = ledger.pulls(FEED)
    assert pull.outcome == "held" and ledger.watermark(FEED) == aware(END)  # with the stewards, not lost
    rows = quarantine.read_rows(ledger, kept.batch_id)
    assert set(rows[KEY]) == expected and (rows[quarantine.RULES] != "").sum() >= len(expected) // 2

    again = run_feed(FEED, start="2020-01-01", end=END, pull=_spoiling(len(expected) // 2))  # the same batch
    assert again.handoff.outcome == "already_delivered"
    decision = quarantine.decide(ledger, kept.batch_id, "release", reason="agency confirms the codes are right",
                                 actor="steward-li")
    assert len(decision.rows) == len(expected)
    done = run_feed(FEED, end="2026-11-24T00:00:00+08:00")
    assert [h.rows for h in done.released] == [len(expected)]
    Stage(STAGE).receive()
    assert set(_received(home)[KEY]) == expected


def test_a_run_killed_while_delivering_a_release_delivers_it_once_on_the_next(sandbox, home):
    ledger = Ledger.from_settings()
    first = run_feed(FEED, end=END, pull=_spoiling(3))
    decision = quarantine.decide(ledger, first.handoff.batch_id, "release", rows=[1, 2, 3],
                                 reason="agency confirmed by phone", actor="steward-wang")
    run_until_killed("before_commit", home, FEED, "2026-11-24T00:00:00+08:00")
    assert quarantine.decisions_of(ledger, batch_id=first.handoff.batch_id)[0].status == "pending"
    rerun = run_feed(FEED, end="2026-11-24T00:00:00+08:00")
    assert rerun.recovered == (f"{decision.release_batch_id}: abandoned",)
    assert [(h.batch_id, h.rows, h.attempt) for h in rerun.released] == [(decision.release_batch_id, 3, 2)]
    assert run_feed(FEED, end="2026-11-25T00:00:00+08:00").released == ()
    Stage(STAGE).receive()
    received = _received(home)
    assert received[KEY].is_unique and len(received) == first.valid + 3


def test_a_quarantine_left_by_a_killed_run_is_removed_and_written_once(sandbox, home, monkeypatch):
    ledger = Ledger.from_settings()
    orphan = home / "quarantine" / "stewards" / f"{FEED}-20200101T000000-20261123T000000-000000000000"
    orphan.mkdir(parents=True)
    (orphan / "part-0001-of-0001.p7m").write_bytes(b"left by a run killed before its commit")
    done = run_feed(FEED, end=END, pull=_spoiling(3))
    assert f"{orphan.name}: quarantine removed" in done.recovered and not orphan.exists()
    assert [p.name for p in (home / "quarantine" / "stewards").iterdir()] == [done.handoff.batch_id]
    assert len(quarantine.batches(ledger)) == 1


def test_a_batch_whose_columns_break_the_contract_stops_the_feed_naming_them(home):
    from connectors import connector_for
    from fundx.core.errors import SourceSchemaError

    def extra_column(feed, window, **_options):
        pulled = connector_for(feed).extract(window)
        return dataclasses.replace(pulled, frame=pulled.frame.assign(home_address="x"))

    ledger = Ledger.from_settings()
    with pytest.raises(SourceSchemaError, match="column\\(s\\) not in the contract home_address") as broke:
        run_feed(FEED, end=END, pull=extra_column)
    assert "contracts/police.deaths.odcs.yaml" in broke.value.action
    (failed,) = ledger.pulls(FEED)
    assert failed.outcome == "failed" and failed.error_type == "SourceSchemaError"
    assert ledger.watermark(FEED) is None and quarantine.batches(ledger) == [] and ledger.deliveries(FEED) == []
