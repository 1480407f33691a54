"""The cases' quarterly report and monthly lists (matching.reports): every figure equals an independent count of
the cases planted, across two quarters and districts, with look-alikes that must not be counted (a case found the
quarter before, one closed after the quarter's end, a false positive, another district's case); the CSV parses
back to the same figures; the picture is a real image with no identity in it. SQLite and PostgreSQL (``ledger``)."""

from __future__ import annotations

import csv
import io
import json
import stat
import zlib
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from fundx.core.timeutil import SHANGHAI, UTC
from fundx.ledger.schema import case_events
from fundx.ledger.schema import orders as orders_table
from matching import lifecycle as lc
from matching import orders as mo
from matching import reports

LI, WANG = lc.Actor("inspector.li", "inspector"), lc.Actor("inspector.wang", "inspector")
CHEN = lc.Actor("supervisor.chen", "supervisor")
XIHU, BINJIANG = "西湖区", "滨江区"  # 330106, 330108 (fundx/core/cities/hangzhou.yaml)
Q3 = (date(2026, 7, 1), date(2026, 9, 30))
MADE = datetime(2027, 1, 5, 9, 0, tzinfo=SHANGHAI)  # both quarters are over when the report is made
ID = "11010519491231002X"  # a valid identity number: it must never reach a file


def suspect(n: int, amount: float, area: str = "330106", rule: str = "paid_after_death") -> dict:
    return {"rule": rule, "subject": f"{n:032x}", "id_masked": f"{area}********{n:03d}X", "area": area,
            "amount_at_risk": amount, "months": 2, "detail": json.dumps({"sources": {"police.deaths": {}}})}


def record(ledger, night: date, *rows: dict) -> list[mo.Order]:
    return list(mo.record(ledger, night, pd.DataFrame(list(rows), columns=list(mo.COLUMNS)), due_days=lc.DUE_DAYS))


def walk(ledger, oid: str, outcome: str, amount: float = 0, *, accept: bool = False, **referral) -> None:
    """A case through its lifecycle: taken, a finding, two reviews by different inspectors (and accepted)."""
    lc.take(ledger, oid, actor=LI)
    lc.submit(ledger, oid, actor=LI, outcome=outcome, amount=amount, **referral)
    lc.review(ledger, oid, actor=LI, approve=True)
    lc.review(ledger, oid, actor=WANG, approve=True)
    if accept:
        lc.accept(ledger, oid, actor=CHEN)


def at(ledger, oid: str, when: datetime, *, escalated: bool = False) -> None:
    """Every step of a case (and its closing, acceptance, escalation) done at ``when``: the past, for the tests."""
    with ledger.engine.begin() as conn:
        conn.execute(case_events.update().where(case_events.c.order_id == oid).values(at=when))
        row = conn.execute(orders_table.select().where(orders_table.c.order_id == oid)).mappings().one()
        values = {k: when for k in ("closed_at", "accepted_at") if row[k] is not None}
        if escalated:
            values["escalated_at"] = when
        if values:
            conn.execute(orders_table.update().where(orders_table.c.order_id == oid).values(**values))


def plant(ledger) -> dict[str, str]:
    """Cases in 2026Q2 (the look-alike before), 2026Q3 and 2026Q4, in 西湖区 and 滨江区; returns name -> order id."""
    in_q3 = datetime(2026, 9, 20, 10, tzinfo=SHANGHAI)
    after_q3 = datetime(2026, 10, 3, 10, tzinfo=SHANGHAI)
    ids: dict[str, str] = {}
    # the quarter before: found in June, closed in Q3 — not in Q3's report
    ids["june"] = record(ledger, date(2026, 6, 30), suspect(1, 1000.0))[0].order_id
    walk(ledger, ids["june"], "confirmed")
    at(ledger, ids["june"], in_q3)
    # Q3, 西湖区: found on 07-01 (the first day) and 09-30 (the last)
    q3 = record(ledger, date(2026, 7, 1), suspect(2, 6000.0), suspect(3, 2000.0), suspect(4, 3000.0),
                suspect(5, 12000.0), suspect(6, 500.0), suspect(7, 800.0),
                suspect(8, 700.0, rule="paid_in_custody"))
    ids |= dict(zip(("recovered_full", "recovered_partial", "false_positive", "referred", "closed_late",
                     "open_overdue", "custody_accepted"), (o.order_id for o in q3)))
    walk(ledger, ids["recovered_full"], "recovered", 6000.0)
    at(ledger, ids["recovered_full"], in_q3)
    walk(ledger, ids["recovered_partial"], "recovered", 500.0)
    at(ledger, ids["recovered_partial"], in_q3, escalated=True)
    walk(ledger, ids["false_positive"], "false-positive")
    at(ledger, ids["false_positive"], in_q3)
    walk(ledger, ids["referred"], "referred", referral_to="discipline", referral_no="JW-2026-7")
    at(ledger, ids["referred"], in_q3)
    walk(ledger, ids["closed_late"], "recovered", 500.0)  # closed after the quarter's end: open at its end
    at(ledger, ids["closed_late"], after_q3)
    lc.take(ledger, ids["open_overdue"], actor=LI)  # in progress, due 07-16: overdue at the end
    at(ledger, ids["open_overdue"], in_q3, escalated=True)
    walk(ledger, ids["custody_accepted"], "confirmed", accept=True)
    at(ledger, ids["custody_accepted"], in_q3)
    last_night = record(ledger, date(2026, 9, 30), suspect(9, 400.0), suspect(10, 900.0, area="330108"))
    ids["last_night"], ids["binjiang"] = (o.order_id for o in last_night)
    mo.close(ledger, ids["binjiang"], outcome="confirmed", amount=0, actor="tests")  # closed in one step
    at(ledger, ids["binjiang"], datetime(2026, 9, 30, 18, tzinfo=SHANGHAI))
    # Q4: 滨江区 only; found in October, closed now (after 2026Q3's end)
    ids["october"] = record(ledger, date(2026, 10, 1), suspect(11, 1500.0, area="330108"))[0].order_id
    walk(ledger, ids["october"], "recovered", 1500.0)
    at(ledger, ids["october"], datetime(2026, 10, 20, tzinfo=SHANGHAI))
    return ids


def by_district(report) -> dict[str, reports.DistrictFigures]:
    return {d.district: d for d in report.rows}


def test_the_quarter_counts_its_own_cases_as_they_stood_at_its_end(ledger):
    plant(ledger)
    report = reports.quarterly(ledger, "2026Q3", now=MADE)
    assert (report.first, report.last, report.as_of, report.running) == (*Q3, Q3[1], False)
    rows = by_district(report)
    assert [d.district for d in report.districts] == mo.district_names()  # every district, zeros included
    xihu, binjiang, total = rows[XIHU], rows[BINJIANG], rows[reports.TOTAL]
    # 西湖区: the 7 of 07-01 and 1 of 09-30 (not June's, not 滨江区's)
    assert (xihu.issued, xihu.open, xihu.verified) == (8, 3, 5)  # open: closed_late, open_overdue, last_night
    assert xihu.verified_share == 5 / 8
    assert xihu.overdue == 2  # closed_late (due 07-16) and open_overdue; last_night is due 10-15
    assert xihu.escalated == 2  # recovered_partial and open_overdue
    assert (xihu.confirmed, xihu.false_positive, xihu.recovered, xihu.referred) == (1, 1, 2, 1)
    assert (xihu.recovered_full, xihu.recovered_partial) == (1, 1)
    assert (xihu.referred_police, xihu.referred_discipline) == (0, 1)
    assert xihu.amount_at_risk == 6000 + 2000 + 3000 + 12000 + 500 + 800 + 700 + 400
    assert xihu.amount_confirmed == 6000 + 2000 + 700  # recovered + recovered + the custody case confirmed
    assert xihu.amount_recovered == 6000 + 500  # not closed_late's 500 (closed after the end)
    assert xihu.recovered_share == pytest.approx(6500 / 8700)
    assert (binjiang.issued, binjiang.verified, binjiang.confirmed, binjiang.amount_confirmed) == (1, 1, 1, 900.0)
    assert all(d.issued == 0 for name, d in rows.items() if name not in (XIHU, BINJIANG, reports.TOTAL))
    assert (total.issued, total.verified, total.open, total.overdue, total.escalated) == (9, 6, 3, 2, 2)
    assert total.amount_recovered == 6500 and total.amount_confirmed == 9600


def test_the_running_quarter_is_counted_as_of_now_and_the_next_as_of_its_end(ledger):
    ids = plant(ledger)
    running = reports.quarterly(ledger, "2026Q4", now=datetime(2026, 11, 1, 12, tzinfo=SHANGHAI))
    assert (running.running, running.as_of) == (True, date(2026, 11, 1))
    binjiang = by_district(running)[BINJIANG]
    assert (binjiang.issued, binjiang.verified, binjiang.recovered, binjiang.amount_recovered) == (1, 1, 1, 1500.0)
    assert by_district(running)[XIHU].issued == 0
    # before the October case was closed it counted as open (and not yet overdue: due 10-16)
    early = reports.quarterly(ledger, "2026Q4", now=datetime(2026, 10, 10, tzinfo=SHANGHAI))
    assert (by_district(early)[BINJIANG].open, by_district(early)[BINJIANG].overdue) == (1, 0)
    # today's figures for the quarter before are the same as at its end: the report does not move afterwards
    again = reports.quarterly(ledger, "2026Q3", now=datetime.now(UTC) + timedelta(days=400))
    assert [d.as_dict() for d in again.rows] == [d.as_dict() for d in reports.quarterly(ledger, "2026Q3", now=MADE).rows]
    assert ids["june"] not in json.dumps(again.as_json())


@pytest.mark.parametrize("bad", ["2026Q5", "2026Q0", "2026-4", "Q4", "", "2026q4x"])
def test_a_bad_quarter_is_refused(ledger, bad):
    with pytest.raises(ValueError, match="not a quarter"):
        reports.quarterly(ledger, bad, now=MADE)


def test_a_quarter_not_begun_is_refused(ledger):
    with pytest.raises(ValueError, match="has not begun"):
        reports.quarterly(ledger, "2027Q2", now=MADE)


def test_the_csv_parses_back_to_the_same_figures(ledger, tmp_path):
    plant(ledger)
    report = reports.quarterly(ledger, "2026Q3", now=MADE)
    paths = reports.write_quarterly(tmp_path / "out", report)
    assert [p.name for p in paths] == ["cases-2026Q3.csv", "cases-2026Q3.png", "cases-2026Q3.pdf"]
    data = paths[0].read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    back = reports.read_quarter_csv(data)
    assert [r["district"] for r in back] == [d.district for d in report.rows]
    for row, figures in zip(back, report.rows):
        doc = figures.as_dict()
        for name, _ in reports.QUARTER_COLUMNS[1:]:
            want = doc[name]
            assert (float(row[name]) if row[name] else None) == (None if want is None else pytest.approx(want, abs=1e-4)), name
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


def _png_text(data: bytes) -> str:
    """The text chunks of a PNG (tEXt, zTXt, iTXt)."""
    out, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"tEXt":
            out.append(body.decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out.append(key.decode("latin-1") + zlib.decompress(rest[1:]).decode("latin-1"))
        elif kind == b"iTXt":
            out.append(body.decode("utf-8", "replace"))
        pos += 12 + length
    return "\n".join(out)


def test_the_picture_is_a_real_page_with_districts_and_counts_only(ledger, tmp_path):
    import numpy as np
    from matplotlib.image import imread

    ids = plant(ledger)
    report = reports.quarterly(ledger, "2026Q3", now=MADE)
    png_path, pdf_path = reports.write_quarterly(tmp_path, report)[1:]
    png, pdf = png_path.read_bytes(), pdf_path.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    pixels = imread(io.BytesIO(png))
    assert pixels.shape[0] > 800 and pixels.shape[1] >= 1600
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank page
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 50  # bars, text, colours
    text = _png_text(png)
    assert "2026Q3" in text
    for oid in ids.values():
        assert oid.encode() not in png and oid.encode() not in pdf
    for masked in ("330106********002X", "********"):
        assert masked not in text and masked.encode() not in pdf


def test_the_page_renders_with_nothing_issued(ledger):
    report = reports.quarterly(ledger, "2026Q1", now=MADE)
    assert report.total.issued == 0 and report.total.verified_share is None
    png, pdf = __import__("matching.report_charts", fromlist=["render"]).render(report)
    assert png.startswith(b"\x89PNG") and pdf.startswith(b"%PDF")


def test_the_monthly_lists_hold_the_months_cases_per_rule_masked(ledger, tmp_path):
    ids = plant(ledger)
    lists = reports.monthly(ledger, "2026-07")
    assert sorted(o.order_id for o in lists.cases) == sorted(ids[k] for k in (
        "recovered_full", "recovered_partial", "false_positive", "referred", "closed_late", "open_overdue",
        "custody_accepted"))  # not June's, not September's, not October's
    paths = reports.write_monthly(tmp_path / "m", lists)
    names = [p.name for p in paths]
    assert names == ["suspects-2026-07-paid_after_death-死亡未停发.csv",
                     "suspects-2026-07-paid_in_custody-服刑未暂停.csv", "summary-2026-07.csv"]
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") and stat.S_IMODE(p.stat().st_mode) == 0o600
        text = data.decode("utf-8-sig")
        assert f"{1:032x}"[:20] not in text and "0000000000000000000" not in text  # no subject tokens
    death = list(csv.DictReader(io.StringIO(paths[0].read_bytes().decode("utf-8-sig"))))
    assert len(death) == 6 and {r["规则"] for r in death} == {"死亡未停发"}
    assert all(r["id_masked"].count("*") == 8 for r in death)
    summary = list(csv.DictReader(io.StringIO(paths[2].read_bytes().decode("utf-8-sig"))))
    assert [(r["district"], r["rule"], r["cases"]) for r in summary] == [
        (XIHU, "paid_after_death", "6"), (XIHU, "paid_in_custody", "1"), (reports.TOTAL, "", "7")]
    assert float(summary[0]["amount_at_risk"]) == 6000 + 2000 + 3000 + 12000 + 500 + 800
    september = reports.monthly(ledger, "2026-09")
    assert sorted(o.district for o in september.cases) == sorted([XIHU, BINJIANG])


def test_monthly_cells_are_neutralised_and_identity_numbers_refused(ledger, tmp_path):
    record(ledger, date(2026, 11, 3), suspect(1, 100.0))
    with ledger.engine.begin() as conn:  # a value that got past the checks some other way
        conn.execute(orders_table.update().values(id_masked="=HYPERLINK(\"x\")"))
    path = reports.write_monthly(tmp_path, reports.monthly(ledger, "2026-11"))[0]
    assert "'=HYPERLINK" in path.read_bytes().decode("utf-8-sig")
    with ledger.engine.begin() as conn:
        conn.execute(orders_table.update().values(id_masked=ID))
    with pytest.raises(ValueError, match="unmasked identity number"):
        reports.write_monthly(tmp_path / "again", reports.monthly(ledger, "2026-11"))
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "2026/11", "11-2026", "2026-1"])
def test_a_bad_month_is_refused(ledger, bad):
    with pytest.raises(ValueError, match="not a month"):
        reports.monthly(ledger, bad)



@pytest.mark.parametrize("cjk", [True, False])
def test_every_character_on_the_page_is_in_a_font_it_is_drawn_with(ledger, monkeypatch, cjk):
    """No empty boxes (tofu): with a CJK font every character of the page is in it or in DejaVu Sans; without one
    the page is drawn in English, districts by their codes, every character in DejaVu Sans."""
    import matplotlib
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font
    from matplotlib.text import Text

    from matching import report_charts

    plant(ledger)
    report = reports.quarterly(ledger, "2026Q3", now=MADE)
    font = report_charts.cjk_font() if cjk else None
    if cjk and font is None:
        pytest.skip("no CJK font on this machine (the Makefile installs fonts-wqy-microhei)")
    families = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    charmap: set[int] = set()
    for family in families:
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
        charmap |= set(FT2Font(path).get_charmap())
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": families}):
        fig = report_charts._page(report, font)
        texts = "".join(t.get_text() for t in fig.findobj(Text))
    assert ("西湖区" in texts) == cjk and "2026" in texts
    missing = sorted({c for c in texts if not c.isspace() and ord(c) not in charmap})
    assert missing == []
    if not cjk:
        assert "330106" in texts and all(ord(c) < 0x2E80 for c in texts)
        monkeypatch.setattr(report_charts, "cjk_font", lambda: None)
        png, _ = report_charts.render(report)
        assert png.startswith(b"\x89PNG")


def test_a_case_sent_back_or_reopened_after_the_quarter_counts_as_it_stood_at_its_end(ledger):
    in_q3 = datetime(2026, 9, 1, tzinfo=SHANGHAI)
    sent, reopened = (o.order_id for o in record(ledger, date(2026, 8, 3), suspect(1, 4000.0), suspect(2, 900.0)))
    walk(ledger, sent, "recovered", 4000.0)
    walk(ledger, reopened, "false-positive")
    at(ledger, sent, in_q3)
    at(ledger, reopened, in_q3)
    lc.send_back(ledger, sent, actor=CHEN, reason="the receipt is missing")  # today: after 2026Q3
    changed = suspect(2, 1800.0)
    changed["detail"] = json.dumps({"sources": {"police.deaths": {}, "civil_affairs.cremations": {}}})
    assert record(ledger, date(2026, 10, 9), changed)[0].stage == "issued"  # reopened in 2026Q4: a new source
    assert (mo.get(ledger, sent).status, mo.get(ledger, reopened).status) == ("open", "open")
    xihu = by_district(reports.quarterly(ledger, "2026Q3", now=MADE))[XIHU]
    assert (xihu.issued, xihu.verified, xihu.open, xihu.recovered, xihu.false_positive) == (2, 2, 0, 1, 1)
    assert (xihu.amount_recovered, xihu.amount_at_risk) == (4000.0, 4900.0)  # the amount known at the end
    q4 = by_district(reports.quarterly(ledger, "2026Q4", now=MADE))[reports.TOTAL]
    assert q4.issued == 0  # a reopened case keeps the night it was found
