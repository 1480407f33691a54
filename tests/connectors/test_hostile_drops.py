"""Issue 16, attacks 3 and 8: files that would take the exchange's memory, and workbooks the reader chokes on.

- an xlsx of a few hundred KB whose sheet *declares* 16,384 columns: the reader padded every row to that
  width (6 GB in 41 s). Now the declared size is not believed and only the contract's columns are taken:
  the memory the read takes is measured against what padding would need;
- a CSV header of 1,000,000 columns (2.4 GB, accepted silently) or wider than FUNDX_FILE_MAX_COLUMNS, a
  value longer than FUNDX_FILE_MAX_CELL_CHARS, a file read whole with more than FUNDX_FILE_MAX_CELLS cells:
  each refused with a DataError naming the limit, before the file is held in memory where it can be;
- an xlsx part with a DTD under another name, and sheets with values the reader raises on: the agency's
  bad data (DataError), never an InternalError.
Each error names the feed and quotes no record (test_hostile_input.assert_clear).
"""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile

import pytest
from test_hostile_input import (
    CSV_FEED,
    HEADERS,
    ROWS,
    SECRET_ID,
    SHEET,
    XLSX_FEED,
    assert_clear,
    csv_text,
    drop,
    drop_workbook,
    never_parsed,  # noqa: F401 - a fixture
    pull,
    workbook_members,
)
from test_hostile_input import drops as drops  # noqa: PLC0414 - the fixture, under its own name

from connectors import connector_for
from fundx.core.errors import DataError
from fundx.core.settings import reload_settings

WIDE = "XFD"  # the last column a sheet may have: 16,384


def declared_wide(rows: int) -> dict[str, bytes]:
    """A small workbook of ``rows`` prisoners whose sheet declares itself A1:XFD<rows+1>."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "在押人员"
    sheet.append(["罪犯编号", "身份证号码", "姓名", "入监日期", "刑期起日", "刑期止日", "羁押状态", "监狱名称", "备注"])
    for n in range(rows):
        sheet.append([f"ZF{n:06d}", SECRET_ID, "张某", "2021-04-12", "2021-04-01", "2030-01-01", "在押", "第一监狱", None])
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[SHEET] = re.sub(rb'<dimension ref="[^"]+"', b'<dimension ref="A1:%s%d"' % (WIDE.encode(), rows + 1),
                            members[SHEET], count=1)
    return members


def test_a_sheet_declaring_16384_columns_is_read_in_the_memory_of_its_cells(drops):
    from openpyxl import load_workbook

    rows = 3000
    members = declared_wide(rows)
    drop_workbook(drops[1], members, rows=rows)
    data = (drops[1] / "prisoners_20261031.xlsx").read_bytes()
    assert len(data) < 300 * 1024
    book = load_workbook(io.BytesIO(data), read_only=True)  # the attack: the reader believes the declaration
    assert len(next(book["在押人员"].iter_rows(values_only=True))) == 16_384
    book.close()
    tracemalloc.start()
    try:
        pulled = pull(XLSX_FEED)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pulled.rows == rows
    padded = rows * 16_384 * 8  # a pointer per padded cell, before any value: 393 MB
    assert peak < padded / 10, f"the read took {peak / 1e6:.0f} MB; padding would take {padded / 1e6:.0f} MB"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("columns", "says"), [
    (2_000, "its header has 2,000 columns, more than FUNDX_FILE_MAX_COLUMNS=1,024"),
    (1_000_000, "its first line is longer than 1,048,576 bytes"),
], ids=["2000-columns", "a-million-columns"])
def test_a_csv_wider_than_the_limit_is_refused_unread(drops, columns, says, stream):
    header = HEADERS + [f"多余{i}" for i in range(columns - len(HEADERS))]
    text = ",".join(header) + "\r\n" + "\r\n".join(",".join(r + [""] * (columns - len(r))) for r in ROWS) + "\r\n"
    drop(drops[0], "deaths_202604.csv", text.encode("gb18030"), rows=2)
    connector = connector_for(CSV_FEED, reload_settings())
    with pytest.raises(DataError) as info:
        if stream:
            from connectors.base import Tally
            from fundx.core.retry import Retrier

            list(connector.chunks(connector_window(), Tally(retry=Retrier(connector.settings, feed=CSV_FEED)), 1000))
        else:
            connector.extract(connector_window())
    assert says in str(info.value)
    assert_clear(info.value, CSV_FEED, kind=DataError)


def connector_window():
    from test_hostile_input import WINDOW

    return WINDOW


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_value_longer_than_the_limit_is_refused(drops, fmt):
    long = "灵" * 40_000
    if fmt == "csv":
        rows = [[*ROWS[0][:5], long, *ROWS[0][6:]], ROWS[1]]
        drop(drops[0], "deaths_202604.csv", csv_text(rows).encode("gb18030"), rows=2)
    else:
        members = workbook_members()
        members[SHEET] = members[SHEET].replace(b"</sheetData>", (
            '<row r="3"><c r="A3" t="inlineStr"><is><t>ZF2</t></is></c><c r="H3" t="inlineStr"><is><t>'
            + long + "</t></is></c></row></sheetData>").encode())
        drop_workbook(drops[1], members, rows=2)
    feed = CSV_FEED if fmt == "csv" else XLSX_FEED
    with pytest.raises(DataError, match="40,000 characters long, more than FUNDX_FILE_MAX_CELL_CHARS=32,767") as info:
        pull(feed)
    assert_clear(info.value, feed, kind=DataError)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_file_read_whole_with_more_cells_than_the_limit_is_refused(drops, monkeypatch, fmt):
    monkeypatch.setenv("FUNDX_FILE_MAX_CELLS", "12")
    if fmt == "csv":
        drop(drops[0], "deaths_202604.csv", csv_text().encode("gb18030"), rows=2)  # 3 lines x 7 columns
    else:
        drop_workbook(drops[1], declared_wide(3), rows=3)
    feed = CSV_FEED if fmt == "csv" else XLSX_FEED
    with pytest.raises(DataError, match=r"more than FUNDX_FILE_MAX_CELLS=12 for a file read whole") as info:
        pull(feed)
    assert "stream: true" in info.value.action
    assert_clear(info.value, feed, kind=DataError)


@pytest.mark.usefixtures("never_parsed")
@pytest.mark.parametrize("member", ["xl/worksheets/sheet1.bin", "customXml/item1.dat", "xl/media/note"])
def test_an_xlsx_part_with_a_dtd_under_any_name_is_refused_before_parsing(drops, member):
    members = workbook_members()
    members[member] = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                       b"<root>&xxe;</root>")
    drop_workbook(drops[1], members)
    with pytest.raises(DataError, match="declares a DTD") as info:
        pull(XLSX_FEED)
    assert_clear(info.value, XLSX_FEED, kind=DataError)


def test_binary_parts_of_a_workbook_are_not_taken_for_xml(drops):
    members = workbook_members() | {"xl/media/image1.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8}
    drop_workbook(drops[1], members)
    assert list(pull(XLSX_FEED).frame["prisoner_id"]) == ["ZF1"]


@pytest.mark.parametrize("cell", [
    b'<c r="A3" t="n"><v>not a number</v></c>',  # a number cell holding text
    b'<c r="A3" s="9999"><v>1</v></c>',  # a style the workbook does not have
    b'<c r="ZZZZZZ3"><v>1</v></c>',  # a column beyond any sheet's
    b'<c r="A3" t="d"><v>2021-13-45</v></c>',  # a date cell that is no date
], ids=["text-in-number", "unknown-style", "column-out-of-range", "impossible-date"])
def test_a_sheet_the_reader_raises_on_is_the_agencys_bad_data(drops, cell):
    members = workbook_members()
    members[SHEET] = members[SHEET].replace(b"</sheetData>", b'<row r="3">' + cell + b"</row></sheetData>")
    drop_workbook(drops[1], members, rows=2)
    try:
        pulled = pull(XLSX_FEED)
    except DataError as error:
        assert_clear(error, XLSX_FEED, kind=DataError)
        assert "not a readable xlsx workbook" in str(error)
    else:  # a reader that takes the cell as text hands it on: the contract's check judges it
        assert pulled.rows == 2


@pytest.mark.parametrize(("stray", "says"), [
    (b'<row r="200000"><c r="XFD200000"><v>1</v></c></row>', "more than FUNDX_FILE_MAX_CELLS"),  # 3.3 billion
    (b'<row r="5000"><c r="ZZ5000"><v>1</v></c></row>', "which the reader would fill with empty cells"),  # 3.5 million
], ids=["past-the-limit", "sparse"])
def test_a_stray_cell_far_from_the_table_is_refused_before_the_reader_builds_its_grid(drops, stray, says, monkeypatch):
    """calamine builds a sheet as a dense grid of its last row by its last column: one stray cell far out would
    have it fill millions or billions of empty cells. The grid is known from the cells' references before any of
    the reader's answer is used; the reader, started meanwhile in its child, is ended (and capped meanwhile)."""
    from connectors import dropxlsx

    started = []

    class Watched(dropxlsx.SheetRead):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(dropxlsx, "SheetRead", Watched)
    members = workbook_members()
    members[SHEET] = members[SHEET].replace(b"</sheetData>", stray + b"</sheetData>")
    drop_workbook(drops[1], members, rows=2)
    with pytest.raises(DataError, match=says) as info:
        pull(XLSX_FEED)
    assert_clear(info.value, XLSX_FEED, kind=DataError)
    assert started and all(read._proc.returncode is not None and not read._thread.is_alive() for read in started)
