"""The file-drop transport on files written here: encodings, done-markers, windows, path guards, xlsx cells."""

from __future__ import annotations

import hashlib
import os
from datetime import date, datetime, time
from pathlib import Path

import pytest

from connectors import connector_for, filedrop
from connectors.decoding import decode, detect_encoding
from connectors.dropxlsx import cell_text
from fundx.core.errors import DataError, IncompletePull, NotFoundError, SourceSchemaError
from fundx.core.settings import reload_settings
from fundx.core.timeutil import SHANGHAI, Window

HEADERS = ["登记编号", "公民身份号码", "姓名", "性别", "死亡日期", "宗教活动场所", "登记日期"]
ROWS = [
    ["ZJ0001", "33010519500101123X", "张三", "男", "2026年4月12日", "灵隐寺", "2026-04-15"],
    ["ZJ0002", "３３０１０６１９６００２０２１２３４", "李四 ", "", "2026/4/12", "", "2026-04-16"],
]
WINDOW = Window.of("2026-01-01", "2027-01-01")
ARRIVED = datetime(2026, 5, 1, 6, 0, tzinfo=SHANGHAI)


def csv_bytes(rows=ROWS, headers=HEADERS) -> str:
    return "\r\n".join(",".join(r) for r in [headers, *rows]) + "\r\n"


def drop(folder: Path, name: str, data: bytes, *, rows: int | None = None, when: datetime = ARRIVED, digest: str | None = None) -> Path:
    path = folder / name
    path.write_bytes(data)
    marker = folder / (name + ".ok")
    marker.write_text(f"rows={len(ROWS) if rows is None else rows}\nsha256={digest or hashlib.sha256(data).hexdigest()}\n")
    stamp = when.timestamp()
    os.utime(marker, (stamp, stamp))
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "religious"
    folder.mkdir()
    monkeypatch.setenv("FUNDX_RELIGIOUS_AFFAIRS_DROP", str(folder))
    monkeypatch.setenv("FUNDX_RETRY_ATTEMPTS", "2")
    monkeypatch.setattr(filedrop, "RECHECK_SECONDS", 0.01)
    reload_settings()
    yield folder
    monkeypatch.undo()
    reload_settings()


def pull(window: Window = WINDOW):
    return connector_for("religious_affairs.deaths", reload_settings()).extract(window)


@pytest.mark.parametrize(
    ("prefix", "codec", "detected"),
    [
        (b"", "gb18030", "gb18030"),
        (b"\x84\x31\x95\x33", "gb18030", "gb18030"),
        (b"", "utf-8", "utf-8"),
        (b"\xef\xbb\xbf", "utf-8", "utf-8"),
        (b"\xff\xfe", "utf-16-le", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be", "utf-16-be"),
    ],
    ids=["gb18030", "gb18030-bom", "utf8", "utf8-bom", "utf16le-bom", "utf16be-bom"],
)
def test_encodings_are_detected_and_values_kept_as_sent(folder, prefix, codec, detected):
    data = prefix + csv_bytes().encode(codec)
    assert detect_encoding(data)[0] == detected
    drop(folder, "deaths_202604.csv", data)
    frame = pull().frame
    assert list(frame.columns) == ["record_id", "id_number", "name", "gender", "death_date", "venue", "registered_on"]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    assert rows[0]["record_id"] == "ZJ0001" and rows[0]["id_number"] == "33010519500101123X"
    assert rows[0]["death_date"] == "2026年4月12日"
    assert rows[1]["id_number"] == "３３０１０６１９６００２０２１２３４"  # full-width digits: the contract's business
    assert rows[1]["name"] == "李四 "  # trailing space kept
    assert rows[1]["gender"] is None and rows[1]["venue"] is None


def test_gb18030_bom_wins_over_a_utf8_reading():
    text = "登记编号\r\n"
    assert decode(b"\x84\x31\x95\x33" + text.encode("gb18030"), name="x.csv") == text


def test_undecodable_file_names_file_and_offset(folder):
    bad = csv_bytes().encode("gb18030")
    offset = bad.index("张".encode("gb18030"))
    bad = bad[:offset] + b"\xff\xff" + bad[offset + 2 :]
    drop(folder, "deaths_202604.csv", bad)
    with pytest.raises(DataError) as info:
        pull()
    assert "deaths_202604.csv" in str(info.value) and f"offset {offset}" in str(info.value)


def test_marker_sha256_mismatch_is_incomplete(folder):
    drop(folder, "deaths_202604.csv", csv_bytes().encode("gb18030"), digest="0" * 64)
    with pytest.raises(IncompletePull, match="sha256.*after 2 tries"):
        pull()


def test_marker_row_count_mismatch_is_incomplete(folder):
    drop(folder, "deaths_202604.csv", csv_bytes().encode("gb18030"), rows=3)
    with pytest.raises(IncompletePull, match="2 data rows, its done-marker says 3"):
        pull()


def streamed(rows: int = 1000) -> list:
    from connectors.base import Tally
    from fundx.core.retry import Retrier

    connector = connector_for("religious_affairs.deaths", reload_settings())
    return list(connector.chunks(WINDOW, Tally(retry=Retrier.for_pull(connector.settings, feed=connector.name)), rows))


@pytest.mark.parametrize("prefix", [b"", b"\x84\x31\x95\x33"], ids=["gb18030", "gb18030-bom"])
def test_a_streamed_file_is_checked_against_its_marker_as_it_is_decoded(folder, prefix):
    """The file is read once: its encoding known from its first block, its SHA-256 checked as it is decoded."""
    data = prefix + csv_bytes().encode("gb18030")
    drop(folder, "deaths_202604.csv", data)
    assert sum(len(f) for f in streamed()) == 2
    drop(folder, "deaths_202604.csv", data, digest="0" * 64)
    with pytest.raises(IncompletePull, match="sha256"):
        streamed()


def test_a_streamed_file_still_being_written_is_incomplete_not_bad_data(folder):
    """A file cut inside a character (still being written) reads as undecodable: it is tried again (its
    marker's SHA-256 does not match), never refused as the agency's bad data."""
    whole = csv_bytes().encode("gb18030")
    cut = whole[:whole.index("灵".encode("gb18030")) + 1]
    drop(folder, "deaths_202604.csv", whole)
    (folder / "deaths_202604.csv").write_bytes(cut)  # the marker is the whole file's
    with pytest.raises(IncompletePull, match="sha256"):
        streamed()
    drop(folder, "deaths_202604.csv", cut)  # the agency's own marker: its bad data
    with pytest.raises(DataError, match="cannot be decoded"):
        streamed()


def test_file_without_marker_is_not_taken(folder):
    (folder / "deaths_202605.csv").write_bytes(csv_bytes().encode("gb18030"))
    assert pull().rows == 0


def test_window_is_the_markers_time(folder):
    drop(folder, "deaths_202604.csv", csv_bytes().encode("gb18030"), when=ARRIVED)
    assert pull(Window.of("2026-05-01T06:00:00+08:00", "2026-05-02")).rows == 2
    assert pull(Window.of("2026-04-01", "2026-05-01T06:00:00+08:00")).rows == 0


def test_latest_file_wins_for_a_repeated_key(folder):
    first = [["ZJ0001", "33010519500101123X", "张三", "男", "2026-04-12", "灵隐寺", "2026-04-15"]]
    second = [["ZJ0001", "33010519500101123X", "张三", "男", "2026-04-13", "灵隐寺", "2026-04-15"]]
    drop(folder, "deaths_202605.csv", csv_bytes(second).encode("gb18030"), rows=1, when=datetime(2026, 6, 1, tzinfo=SHANGHAI))
    drop(folder, "deaths_202604.csv", csv_bytes(first).encode("gb18030"), rows=1, when=datetime(2026, 5, 1, tzinfo=SHANGHAI))
    result = pull()
    assert result.rows == 1 and result.frame.loc[0, "death_date"] == "2026-04-13" and result.pages == 2


def test_renamed_header_is_a_schema_error_naming_the_column(folder):
    headers = [h if h != "公民身份号码" else "身份证号" for h in HEADERS]
    drop(folder, "deaths_202604.csv", csv_bytes(headers=headers).encode("gb18030"))
    with pytest.raises(SourceSchemaError) as info:
        pull()
    text = str(info.value)
    assert text.startswith("religious_affairs.deaths: ") and "id_number (公民身份号码)" in text
    assert "deaths_202604.csv" in text and "33010519500101123X" not in text


def test_symlink_out_of_the_folder_is_never_followed(folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = drop(outside, "secret.csv", csv_bytes().encode("gb18030"))
    (folder / "deaths_202699.csv").symlink_to(target)
    (folder / "deaths_202699.csv.ok").symlink_to(outside / "secret.csv.ok")
    assert pull().rows == 0


def test_missing_folder_is_not_found(folder, monkeypatch):
    monkeypatch.setenv("FUNDX_RELIGIOUS_AFFAIRS_DROP", str(folder / "nope"))
    with pytest.raises(NotFoundError, match="drop folder"):
        pull()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("", None),
        ("330105195001011234", "330105195001011234"),
        (1.10105e17, "1.10105e+17"),
        (330105195001011234, "330105195001011234"),
        (datetime(2021, 4, 12), "2021-04-12"),
        (datetime(2021, 4, 12, 9, 30), "2021-04-12T09:30:00"),
        (date(2021, 4, 12), "2021-04-12"),
        (time(9, 30), "09:30:00"),
        ("2021年4月12日", "2021年4月12日"),
    ],
)
def test_xlsx_cells_become_their_text(value, text):
    assert cell_text(value) == text


def test_xlsx_workbook_numbers_and_dates(tmp_path, monkeypatch):
    from openpyxl import Workbook

    folder = tmp_path / "justice"
    folder.mkdir()
    monkeypatch.setenv("FUNDX_JUSTICE_DROP", str(folder))
    book = Workbook()
    sheet = book.active
    sheet.title = "在押人员"
    sheet.append(["罪犯编号", "身份证号码", "姓名", "入监日期", "刑期起日", "刑期止日", "羁押状态", "监狱名称", "备注"])
    sheet.append(["ZF1", 1.10105e17, "王五", datetime(2021, 4, 12), "2021/4/1", "2030年1月1日", "在押", None, "x"])
    sheet.append([None] * 9)
    path = folder / "prisoners_20261031.xlsx"
    book.save(path)
    data = path.read_bytes()
    (folder / "prisoners_20261031.xlsx.ok").write_text(f"rows=1\nsha256={hashlib.sha256(data).hexdigest()}\n")
    result = connector_for("justice.prisoners", reload_settings()).extract(Window.of("2020-01-01", "2100-01-01"))
    row = result.frame.astype(object).where(result.frame.notna(), None).to_dict("records")[0]
    assert row == {
        "prisoner_id": "ZF1", "id_number": "1.10105e+17", "name": "王五", "admitted_on": "2021-04-12",
        "sentence_start": "2021/4/1", "sentence_end": "2030年1月1日", "custody_status": "在押", "prison": None,
    }
