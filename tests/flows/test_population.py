"""A religious-affairs monthly file as a real bureau sends it, through the whole path (drop folder ->
connector -> contract -> seal -> stage): people whose numbers were first issued all over the country
or under codes since retired, an old believer's 15-digit number, minority names with the middle dot
in several forms, characters four bytes long in GB18030, a name padded with a full-width space;
GB18030 with a BOM. Every row is delivered, the numbers as the contract normalises them and the
names exactly as sent."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fundx.core.identity import id_check_char, upgrade_id15
from fundx.core.settings import reload_settings
from fundx.core.timeutil import SHANGHAI
from fundx.crypto.keys import KeySettings, KeyStore
from fundx.crypto.opening import open_sealed
from fundx.exchange.run import run_feed
from fundx.stage import Stage

FEED, STAGE = "religious_affairs.deaths", "death_matching"
HEADER = ["登记编号", "公民身份号码", "姓名", "性别", "死亡日期", "宗教活动场所", "登记日期"]


def _number(area: str, born: str, seq: str) -> str:
    first17 = area + born + seq
    return first17 + id_check_char(first17)


#: (what the row shows, number as written, name as written, the number the stage must get)
PEOPLE = [
    ("Beijing", _number("110105", "19380214", "021"), "张伟", None),
    ("Shenyang, U+00B7", _number("210102", "19450301", "013"), "买买提·艾力", None),
    ("Hefei, U+30FB (a GB 2312 decoder's dot)", _number("340104", "19520619", "024"), "阿依古丽・吐尔逊", None),
    ("Urumqi, U+2022", _number("650102", "19400101", "035"), "艾力•玉素甫", None),
    ("Hangzhou's retired 下城区, U+20BB7", _number("330103", "19360522", "017"), "张欣𠮷", None),
    ("Dongguan, 堃 (GBK)", _number("441900", "19550808", "031"), "李堃", None),
    ("Hong Kong residence permit, 喆 (GBK)", _number("810000", "19480909", "046"), "陈喆", None),
    ("15 digits, full-width space", "330106330304128", "王\u3000芳", upgrade_id15("330106330304128")),
]


@pytest.fixture
def home(keys_dir, monkeypatch, tmp_path) -> Path:
    """An exchange home and ledger of the test's own, the run's PKI, and the bureau's drop folder."""
    drop = tmp_path / "drop"
    drop.mkdir()
    monkeypatch.setenv("FUNDX_RELIGIOUS_AFFAIRS_DROP", str(drop))
    monkeypatch.setenv("FUNDX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FUNDX_LEDGER_URL", raising=False)
    monkeypatch.setenv("FUNDX_KEYS_DIR", str(keys_dir))
    reload_settings()
    yield drop
    reload_settings()


def _drop(folder: Path, rows: list[list[str]], name: str = "deaths_202610.csv") -> None:
    """Write the file as the bureau does (GB18030 with its BOM) and then its done-marker."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows([HEADER, *rows])
    data = "\ufeff".encode("gb18030") + text.getvalue().encode("gb18030")
    assert data.startswith(b"\x84\x31\x95\x33") and "𠮷".encode("gb18030") in data  # four bytes: 95 32 82 36
    (folder / name).write_bytes(data)
    marker = folder / f"{name}.ok"
    marker.write_text(f"rows={len(rows)}\nsha256={hashlib.sha256(data).hexdigest()}\n", encoding="ascii")
    arrived = (datetime.now(SHANGHAI) - timedelta(hours=1)).timestamp()
    os.utime(marker, (arrived, arrived))


def _received(home_dir: Path) -> pd.DataFrame:
    keys = KeyStore(KeySettings())
    key, cert = keys.stage_keys(STAGE)[0]
    tables = []
    for path in sorted((home_dir / "stages" / STAGE / "received").glob("*/part-*.p7m")):
        opened = open_sealed(path.read_bytes(), recipient_key=key, recipient_cert=cert, trusted_ca=keys.ca(),
                             crl=keys.crl())
        tables.append(pq.read_table(io.BytesIO(opened.payload)))
    return pa.concat_tables(tables).to_pandas()


def test_a_real_bureaus_file_is_delivered_whole(home: Path) -> None:
    rows = [[f"ZJ3301{i + 1:010d}", number, name, "女" if i % 3 == 2 else "男", f"2026年10月{i + 1}日",
             "杭州凤凰寺" if i % 2 else "", f"2026-10-{i + 12:02d}"]
            for i, (_what, number, name, _want) in enumerate(PEOPLE)]
    _drop(home, rows)
    done = run_feed(FEED, start="2020-01-01", end=(datetime.now(SHANGHAI) + timedelta(days=1)).isoformat())
    assert (done.rows, done.valid, done.quarantined) == (len(PEOPLE), len(PEOPLE), 0)
    assert done.handoff.outcome == "delivered"
    (receipt,) = Stage(STAGE).receive()
    assert receipt.outcome == "received" and receipt.rows == len(PEOPLE)
    got = _received(reload_settings().home).set_index("record_id")
    for row, (what, number, name, want) in zip(rows, PEOPLE):
        delivered = got.loc[row[0]]
        assert delivered["id_number"] == (want or number), what  # the 15-digit number upgraded (upgrade15)
        assert delivered["name"] == name, what  # the name exactly as the bureau sent it, dot and all
    assert got.loc[rows[-1][0], "death_date"] == "2026-10-08"


def test_the_same_number_in_15_digits_is_quarantined_where_the_contract_does_not_upgrade(home: Path) -> None:
    """police.deaths declares no upgrade15: a 15-digit number stays a format error there, as before."""
    from contracts.validate import RULES_COLUMN, check

    frame = pd.DataFrame([{"cancellation_id": "HKZX33010000000001", "id_number": "330106330304128", "name": "王芳",
                           "gender": "女", "birth_date": "1933-03-04", "death_date": "2026-10-01",
                           "cancelled_on": "2026-10-10", "police_station": None,
                           "updated_at": "2026-10-11T09:00:00+08:00"}]).astype("str")
    checked = check("police.deaths", frame)
    assert checked.valid.empty and checked.quarantined[RULES_COLUMN].tolist() == ["id_number.format"]


def test_the_same_record_sent_twice_with_different_values_is_held_for_the_stewards(home: Path) -> None:
    """Issue 17 part 4: the bureau's file names record 2 twice, once with another date of death; record
    3 twice, identical. The identical copy collapses; the two versions of record 2 are a key conflict,
    both quarantined under ``key_conflict`` for a steward to say which is right; the rest is delivered."""
    from fundx.exchange import quarantine
    from fundx.ledger import Ledger

    rows = [[f"ZJ3301{i + 1:010d}", number, name, "男", f"2026年10月{i + 1}日", "", f"2026-10-{i + 12:02d}"]
            for i, (_what, number, name, _want) in enumerate(PEOPLE)]
    rows.append([*rows[1][:4], "2026年9月30日", *rows[1][5:]])  # record 2 again, another date of death
    rows.append(list(rows[2]))  # record 3 again, unchanged
    _drop(home, rows)
    done = run_feed(FEED, start="2020-01-01", end=(datetime.now(SHANGHAI) + timedelta(days=1)).isoformat())
    assert (done.rows, done.valid, done.quarantined) == (len(PEOPLE) + 1, len(PEOPLE) - 1, 2)
    assert done.report is not None and done.report["repeats"] == {"identical": 1, "superseded": 0, "conflicting": 2}
    ledger = Ledger.from_settings()
    (kept,) = quarantine.batches(ledger, feed=FEED)
    frame = quarantine.read_rows(ledger, kept.batch_id)
    assert frame[quarantine.RULES].tolist() == ["key_conflict", "key_conflict"]
    assert set(frame["record_id"]) == {rows[1][0]} and sorted(frame["death_date"]) == ["2026-09-30", "2026-10-02"]
    (receipt,) = Stage(STAGE).receive()
    assert receipt.outcome == "received"
    got = _received(reload_settings().home)
    assert rows[1][0] not in set(got["record_id"]) and len(got) == len(PEOPLE) - 1
