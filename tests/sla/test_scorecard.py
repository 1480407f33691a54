"""The monthly SLA scorecard on the ledger (SQLite and PostgreSQL), from a month of nights built as
tests/sla/test_monitor.py builds them, judged by the real monitor with a controllable clock: late, missing,
failed, held and quarantined nights, a night the exchange did not run and a slow night; the figures
are asserted exactly, and the JSON and the PNG carry nothing shaped like an identity number."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import struct
import uuid
import zlib
from datetime import date, datetime, timedelta

import pytest
from rich.console import Console

from contracts import contract_names
from contracts.sla.policy import all_slas, feed_sla
from fundx.core.timeutil import SHANGHAI, UTC
from fundx.ledger import Ledger
from fundx.ledger.schema import pull_figures, pulls, quarantines, rule_failures, runs
from fundx.notify import Notifier
from fundx.sla import monitor
from fundx.sla import scorecard as sc

MONTH = "2026-11"  # 1 November 2026 is a Sunday: Tuesdays 3, 10, 17, 24; religious affairs due on the 6th
FIRST = date(2026, 10, 31)  # the ledger's first night: the day before the month
SKIPPED = date(2026, 11, 15)  # the exchange did not run at all
AFTER = datetime(2026, 12, 1, 9, 0, tzinfo=SHANGHAI)  # the clock: the month is over
ID_LIKE = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])|(?<![0-9])[0-9]{15}(?![0-9])")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: an identity number planted where the ledger holds free text (a failed pull's message, a run's summary):
#: the scorecard reads figures only, so it never comes out
CANARY = "11010519491231002X"


def _local(night: date, hh: int, mm: int = 0) -> datetime:
    return datetime(night.year, night.month, night.day, hh, mm, tzinfo=SHANGHAI)


# What happens, per (feed, night), besides a delivery at 02:00 of 100 rows (50 for the weekly and
# monthly feeds on their due nights, 0 on their other nights):
LATE = {("police.deaths", date(2026, 10, 31)): (7, 0),  # October: outside the month
        ("police.deaths", date(2026, 11, 10)): (7, 10),  # late
        ("police.deaths", date(2026, 11, 20)): (6, 0),  # exactly at the deadline: on time
        ("justice.prisoners", date(2026, 11, 17)): (3, 0),  # on time, an hour later
        ("justice.prisoners", date(2026, 11, 24)): (7, 0)}  # late
SKIP = {("civil_affairs.deaths", date(2026, 11, 12))}  # missing
FAILED = {("market_regulation.businesses", date(2026, 11, 8))}  # only a failed pull
HELD = {("market_regulation.businesses", date(2026, 11, 9)): {"uscc": 3, "row_count": 100}}  # held whole
QUARANTINED = {("medical_insurance.bills", date(2026, 11, 5)): 10}  # 10 of 100 rows failed
EVENT_P90 = {("police.deaths", date(2026, 11, 10)): 30.0}  # else 2.0: within every feed's limit
SLOW = date(2026, 11, 25)  # the night ran 150 minutes (budget 120)


def _rows(feed: str, night: date) -> int:
    s = feed_sla(feed)
    if s.period == "day":
        return 100
    return 50 if s.due(night) else 0


def _build_month(ledger: Ledger) -> None:
    """October's last night and November 2026 as the ledger would hold them (a run from 01:30 and one pull
    per feed each night, in night order, written in a few statements), then the nights judged by the
    monitor the morning after, in order, as the nightly flow does: breaches open and recover for real."""
    span = (date(2026, 11, 30) - FIRST).days + 1
    nights = [FIRST + timedelta(days=i) for i in range(span) if FIRST + timedelta(days=i) != SKIPPED]
    feeds = sorted(all_slas())
    with ledger.transaction() as conn:
        run_ids = dict(conn.execute(runs.insert().returning(runs.c.night, runs.c.id, sort_by_parameter_order=True), [
            dict(uid=str(uuid.uuid4()), kind="night", night=night.isoformat(), started_at=_local(night, 1, 30),
                 ended_at=_local(night, 4, 0) if night == SLOW else _local(night, 2, 10), outcome="completed",
                 feeds=8, feeds_failed=0, summary=f"checked {CANARY}") for night in nights]).all())
        planned = [(feed, night) for night in nights for feed in feeds if (feed, night) not in SKIP]
        values = []
        for feed, night in planned:
            key = (feed, night)
            done = _local(night, *LATE.get(key, (2, 0)))
            outcome = "failed" if key in FAILED else "held" if key in HELD else "pulled"
            values.append(dict(
                run_id=run_ids[night.isoformat()], feed=feed, window_start=_local(night, 1, 30) - timedelta(days=1),
                window_end=_local(night, 1, 30), backfill=False, started_at=done - timedelta(minutes=1), ended_at=done,
                duration_s=60.0, outcome=outcome, rows=None if outcome == "failed" else _rows(feed, night), bytes=1000,
                pages=1, retries=0, digest="sha256:00", error_type="SourceUnavailable" if outcome == "failed" else None,
                error_message=f"no record {CANARY}" if outcome == "failed" else None))
        pull_ids = conn.execute(pulls.insert().returning(pulls.c.id, sort_by_parameter_order=True),
                                values).scalars().all()
        conn.execute(pull_figures.insert(), [
            dict(pull_id=pid, event_lag_p50=1.0, event_lag_p90=EVENT_P90.get(key, 2.0))
            for pid, key, v in zip(pull_ids, planned, values) if v["rows"]])
        for pid, key, v in zip(pull_ids, planned, values):
            (feed, night), n = key, v["rows"] or 0
            failing = QUARANTINED.get(key) or (n if key in HELD else 0)
            if not failing:
                continue
            batch = f"{feed}-{night}-{pid}"
            conn.execute(quarantines.insert().values(
                batch_id=batch, feed=feed, night=night.isoformat(), run_id=v["run_id"], pull_id=pid,
                window_start=v["window_start"], window_end=v["window_end"], digest="sha256:00", pulled=n,
                valid=0 if key in HELD else n - failing, quarantined=failing, held=key in HELD, parts=1, bytes=1,
                created_at=datetime.now(UTC)))
            conn.execute(rule_failures.insert(), [
                dict(batch_id=batch, feed=feed, night=night.isoformat(), rule=rule, failed=count, rows=n)
                for rule, count in HELD.get(key, {"date_order": failing}).items()])
    # The monitor's morning checks. A quiet night's check opens and recovers nothing when nothing is open, so
    # only the nights where something happens and the nights after them (recoveries) are judged.
    eventful = {night for _, night in (*LATE, *SKIP, *FAILED, *HELD, *QUARANTINED, *EVENT_P90)} | {SLOW, SKIPPED}
    quiet = Notifier.from_urls([])
    for night in sorted(eventful | {n + timedelta(days=1) for n in eventful} | {FIRST}):
        monitor.check(ledger, night=night, now=_local(night, 9, 0), notifier=quiet, emit=False)


def _feed(card: sc.Scorecard, name: str) -> dict:
    return next(f for f in card.as_json()["feeds"] if f["feed"] == name)


def _figures(card: sc.Scorecard) -> None:
    data = card.as_json()
    assert data["schema"] == "fundx.sla-scorecard/1" and data["month"] == MONTH and data["empty"] is False
    assert data["nights"] == {"first": "2026-11-01", "last": "2026-11-30", "recorded": 29}
    assert data["night_breaches"] == {"night_slow": 1}
    # every agency with a contract, by its feeds' first name part (police.deaths -> police), sorted
    assert [a["agency"] for a in data["agencies"]] == sorted({f.partition(".")[0] for f in contract_names()})
    assert [(a["agency"], a["feeds"]) for a in data["agencies"]][:2] == [
        ("civil_affairs", ["civil_affairs.deaths"]), ("health_commission", ["health_commission.hospital_deaths"])]
    # the feeds by agency, in the agencies' order (the social-insurance office has five)
    assert list(dict.fromkeys(f["agency"] for f in data["feeds"])) == [a["agency"] for a in data["agencies"]]
    assert sorted(f["feed"] for f in data["feeds"]) == sorted(contract_names())

    police = _feed(card, "police.deaths")
    # 30 due; the 15th missing; the 10th late (07:10); the 20th at 06:00 sharp is on time, as for the SLA
    assert police["nights"] == {"due": 30, "delivered": 29, "on_time": 28, "missing": 1, "failed": 0, "pending": 0}
    assert police["on_time_rate"] == round(28 / 30, 4) == 0.9333
    assert police["completeness"] == {"nights": 0.9667, "rows": 1.0}
    assert police["rows"] == {"pulled": 2900, "delivered": 2900, "quarantined": 0, "failing": 0}
    assert police["error_rate"] == 0.0
    # available 01:30: 27 nights at 0.5 h, one at 4.5 h, one at 5.667 h
    assert police["latency_hours"] == {"p50": 0.5, "p90": 0.5, "nights": 29}
    assert police["event_p90_days"] == {"max": 30.0, "mean": round((28 * 2.0 + 30.0) / 29, 3), "nights": 29}
    assert police["breaches"] == {"missing": 1, "late": 1}  # October's late night is not November's

    civil = _feed(card, "civil_affairs.deaths")
    assert civil["nights"] == {"due": 30, "delivered": 28, "on_time": 28, "missing": 2, "failed": 0, "pending": 0}
    assert civil["completeness"]["nights"] == round(28 / 30, 4) and civil["breaches"] == {"missing": 2}
    assert civil["latency_hours"] == {"p50": 1.0, "p90": 1.0, "nights": 28}  # available 01:00

    bills = _feed(card, "medical_insurance.bills")
    assert bills["rows"] == {"pulled": 2900, "delivered": 2890, "quarantined": 10, "failing": 10}
    assert bills["error_rate"] == round(10 / 2900, 4) == 0.0034
    assert bills["completeness"] == {"nights": 0.9667, "rows": round(2890 / 2900, 4)}
    assert bills["breaches"] == {"missing": 1, "error_rate": 1}
    assert bills["latency_hours"]["p50"] == 1.5  # available 00:30

    market = _feed(card, "market_regulation.businesses")
    # the 8th failed, the 9th held whole (delivered to the stewards: on time), the 15th missing
    assert market["nights"] == {"due": 30, "delivered": 28, "on_time": 28, "missing": 1, "failed": 1, "pending": 0}
    # the held batch's 100 rows are quarantined, 3 of them failing a row rule (the SLA's error rate)
    assert market["rows"] == {"pulled": 2800, "delivered": 2700, "quarantined": 100, "failing": 3}
    assert market["error_rate"] == round(3 / 2800, 4) and market["completeness"]["rows"] == round(2700 / 2800, 4)
    assert market["breaches"] == {"missing": 1, "failed": 1, "error_rate": 1}

    justice = _feed(card, "justice.prisoners")
    # due Tuesdays only; available Monday 08:00: 18 h, 18 h, 19 h, 23 h (late)
    assert justice["nights"] == {"due": 4, "delivered": 4, "on_time": 3, "missing": 0, "failed": 0, "pending": 0}
    assert justice["latency_hours"] == {"p50": 18.5, "p90": 21.8, "nights": 4}
    assert justice["rows"]["pulled"] == 200 and justice["event_p90_days"]["nights"] == 4
    assert justice["breaches"] == {"late": 1}

    religious = _feed(card, "religious_affairs.deaths")
    # due on the 6th only; available by the end of the 5th: delivered 2 h later
    assert religious["nights"] == {"due": 1, "delivered": 1, "on_time": 1, "missing": 0, "failed": 0, "pending": 0}
    assert religious["on_time_rate"] == 1.0 and religious["latency_hours"] == {"p50": 2.0, "p90": 2.0, "nights": 1}
    assert religious["breaches"] == {}

    by_agency = {a["agency"]: a for a in data["agencies"]}
    assert {k: v for k, v in by_agency["police"].items() if k not in ("feeds", "feed")} == \
        {k: v for k, v in police.items() if k not in ("feeds", "feed")}

    rows = card.rows()
    # a row per feed, an "(all feeds)" row for an agency of several (the social-insurance office), the night's
    expected = sum(len(a["feeds"]) + (len(a["feeds"]) > 1) for a in data["agencies"]) + 1
    assert len(rows) == expected and all(len(r) == len(sc.COLUMNS) for r in rows)
    assert rows[-1] == ("(the night)", "", "", "", "", "", "", "", "", "night_slow 1")
    police_row = next(r for r in rows if r[1] == "police.deaths")
    assert police_row == ("police", "police.deaths", "30", "29", "28 (93.3 %)", "nights 96.7 %, rows 100.00 %",
                          "0.00 %", "0.50 / 0.50 h", "30 d max", "missing 1, late 1")


def _in_progress_and_pooled(ledger: Ledger) -> None:
    """Judged on 12 November at 05:00, with a second police feed that never delivered: a due night before its
    deadline with nothing delivered is pending, and an agency pools its feeds' nights."""
    slas = all_slas()
    slas["police.births"] = dataclasses.replace(feed_sla("civil_affairs.deaths"), feed="police.births")
    card = sc.scorecard(ledger, MONTH, now=_local(date(2026, 11, 12), 5, 0), slas=slas)
    assert card.last_night == date(2026, 11, 12)
    civil = _feed(card, "civil_affairs.deaths")  # the 12th: skipped, and 05:00 is before its 06:00 deadline
    assert civil["nights"] == {"due": 11, "delivered": 11, "on_time": 11, "missing": 0, "failed": 0, "pending": 1}
    police = next(a for a in card.agencies if a.agency == "police")
    assert police.feeds == ("police.births", "police.deaths")
    # police.deaths: 12 due and delivered, the 10th late; police.births: 11 missing, the 12th pending
    assert (police.nights_due, police.nights_delivered, police.nights_on_time, police.nights_missing,
            police.nights_pending) == (23, 12, 11, 11, 1)
    assert police.on_time_rate == 11 / 23 and police.rows_pulled == 1200 and police.breaches == {"late": 1}
    assert police.latencies_h == [0.5] * 9 + [5 + 40 / 60] + [0.5] * 2  # only police.deaths delivered
    assert police.latency_p50_h == 0.5 and police.latency_p90_h == 0.5
    assert [r[1] for r in card.rows() if r[0] == "police"] == ["police.births", "police.deaths", "(all feeds)"]
    assert next(r for r in card.rows() if r[1] == "police.births")[2] == "11 (+1 pending)"


def _png_text(data: bytes) -> str:
    """Every text chunk of a PNG (tEXt, zTXt, iTXt), decoded."""
    assert data[:8] == PNG_MAGIC
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            out.append(body.decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out.append(key.decode("latin-1") + "=" + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            out.append(body.decode("utf-8", "replace"))
        pos += 12 + length
    return "\n".join(out)


def _rendered(card: sc.Scorecard, tmp_path) -> None:
    text = json.dumps(card.as_json(), ensure_ascii=False) + repr(card.rows())
    assert not ID_LIKE.search(text) and CANARY not in text
    target = tmp_path / "reports" / "sla-2026-11.png"
    assert sc.write_png(card, target) == target
    data = target.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    meta = _png_text(data)
    assert "fundx SLA scorecard 2026-11" in meta and not ID_LIKE.search(meta) and CANARY.encode() not in data
    assert [p.name for p in target.parent.iterdir()] == ["sla-2026-11.png"]  # no temporary file left
    from PIL import Image

    with Image.open(target) as image:
        assert image.format == "PNG" and image.size[0] >= 1000 and image.size[1] >= 400


def test_an_empty_month_still_renders(ledger, tmp_path):
    card = sc.scorecard(ledger, MONTH, now=AFTER)
    assert card.empty and card.rows() == [] and card.feeds == [] and card.agencies == []
    assert card.as_json()["nights"] == {"first": None, "last": None, "recorded": 0}
    data = sc.write_png(card, tmp_path / "empty.png").read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2_000 and "fundx SLA scorecard 2026-11" in _png_text(data)


def _other_months(ledger: Ledger) -> None:
    assert sc.scorecard(ledger, "2026-09", now=AFTER).empty  # before the ledger's first night
    assert sc.scorecard(ledger, "2026-12", now=AFTER).empty  # the 1st's night has no run yet
    october = sc.scorecard(ledger, "2026-10", now=AFTER)  # only the 31st: the ledger started then
    assert (october.first_night, october.last_night, october.nights_recorded) == (date(2026, 10, 31),) * 2 + (1,)
    assert _feed(october, "police.deaths")["breaches"] == {"late": 1}


def _command(ledger: Ledger, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sc.Ledger, "from_settings", classmethod(lambda cls, settings=None: Ledger(ledger.url)))

    def run(*args, now=AFTER) -> tuple[int, str]:
        out = io.StringIO()
        code = sc.scorecard_command(*args, Console(file=out, width=250, color_system=None), now=now)
        return code, out.getvalue()

    code, text = run("2026-10", tmp_path / "card.png", False)  # one night: police late
    assert code == 0 and (tmp_path / "card.png").read_bytes()[:8] == PNG_MAGIC
    for column in sc.COLUMNS:
        assert column in text
    assert "SLA scorecard 2026-10 (nights 2026-10-31 – 2026-10-31)" in text
    line = next(line for line in text.splitlines() if "police.deaths" in line)
    assert [cell.strip() for cell in line.strip("│ ").split("│")] == [
        "police", "police.deaths", "1", "1", "0 (0.0 %)", "nights 100.0 %, rows 100.00 %", "0.00 %", "5.50 / 5.50 h",
        "2 d max", "late 1"]  # delivered 07:00, available 01:30
    assert f"chart: {tmp_path / 'card.png'}" in text and not ID_LIKE.search(text)

    # the defaults: the clock's month in Asia/Shanghai (31 October 16:30 UTC is 1 November 00:30 there),
    # the chart under FUNDX_HOME/reports
    from fundx.core.settings import get_settings

    code, text = run(None, None, True, now=datetime(2026, 10, 31, 16, 30, tzinfo=UTC))
    data = json.loads(text)
    chart = get_settings().home / "reports" / "sla-2026-11.png"
    assert code == 0 and data["month"] == MONTH and data["png"] == str(chart) and chart.read_bytes()[:8] == PNG_MAGIC
    assert data["nights"] == {"first": "2026-11-01", "last": "2026-11-01", "recorded": 1}
    assert data["generated_at"] == "2026-11-01T00:30:00+08:00" and not ID_LIKE.search(text)
    assert data == {**sc.scorecard(ledger, MONTH, now=datetime(2026, 10, 31, 16, 30, tzinfo=UTC)).as_json(),
                    "png": str(chart)}


def test_a_month_of_nights(ledger, monkeypatch, tmp_path):
    """One month built once per ledger (SQLite, PostgreSQL), then every view of it."""
    _build_month(ledger)
    card = sc.scorecard(ledger, MONTH, now=AFTER)
    _figures(card)
    _rendered(card, tmp_path)
    _in_progress_and_pooled(ledger)
    _other_months(ledger)
    _command(ledger, monkeypatch, tmp_path)


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "11-2026", "2026-11-01", ""])
def test_a_bad_month_names_the_option_and_exits_2(bad):
    out = io.StringIO()
    assert sc.scorecard_command(bad, None, False, Console(file=out, width=200, color_system=None)) == 2
    assert "--month" in out.getvalue() and "YYYY-MM" in out.getvalue()
