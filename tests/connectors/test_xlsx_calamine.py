"""The xlsx reader (connectors/dropxlsx.py): calamine in a child process reads what openpyxl read, cell for cell
as text (a property over generated sheets); a cell reference outside the grid, a sheet whose grid would exceed
FUNDX_FILE_MAX_CELLS, and a reader that dies on the file are the agency's bad file, and this process lives on."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import dropxlsx
from connectors.dropxlsx import cell_text, read_sheet, sheet_extent

SHEET = "在押人员"
#: text an agency types: ids, names, dates written as text, blanks; no control characters (xlsx cannot hold them)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn")), max_size=12)
CELL = st.one_of(
    st.none(), TEXT,
    st.integers(-10**15, 10**15),
    st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda f: abs(f) < 1e300),
    st.sampled_from([1.10105e17, 3.3010619501e17, 0.1, -2.5, 100000.0, 2.0 ** 53, 9999999999999998.0, 1e16, -1e16]),
    st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(2100, 1, 1)).map(lambda d: d.replace(microsecond=0)),
    st.dates(min_value=date(1900, 3, 1), max_value=date(2100, 1, 1)),
    st.booleans(),
)


def workbook(rows: list[list[object]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = SHEET
    for row in rows:
        sheet.append([datetime.combine(v, time.min) if isinstance(v, date) and not isinstance(v, datetime) else v
                      for v in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def by_openpyxl(data: bytes) -> list[list[str | None]]:
    """What the reader of fundx 0.1 (openpyxl, read-only) handed on."""
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    sheet = book[SHEET]
    sheet.reset_dimensions()
    rows = [[cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    book.close()
    return rows


def by_calamine(data: bytes) -> list[list[str | None]]:
    status, rows = read_sheet(data, SHEET)
    assert status == "ok", rows
    return [[cell_text(v) for v in row] for row in rows]


def trimmed(rows: list[list[str | None]]) -> list[list[str | None]]:
    """Rows without trailing empty cells, without trailing empty rows: the grid's padding is not content."""
    out = []
    for row in rows:
        row = list(row)
        while row and row[-1] is None:
            row.pop()
        out.append(row)
    while out and not out[-1]:
        out.pop()
    return out


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(CELL, min_size=1, max_size=6), min_size=1, max_size=8))
def test_calamine_hands_on_the_text_openpyxl_did(rows):
    data = workbook(rows)
    expected = trimmed(by_openpyxl(data))
    got = trimmed(by_calamine(data))
    for want, have in zip(expected, got, strict=True):
        for a, b in zip(want, have, strict=True):
            if a == b:
                continue
            # the one difference: a float openpyxl wrote in exponent form and read back as a float, whole and exact
            # (1e+16 and 100000.0 written by a program), calamine's text is the whole number's
            assert a is not None and b is not None and float(a) == float(b) and "." not in b, (a, b)


def by_rows(rows: list[list[object]], wanted: list[int]) -> list[list[str | None]]:
    """What the reader made of calamine's rows cell by cell before it took columns (fundx 0.1's rule): a row of
    nothing but empty cells left out, every other cell of a wanted column its :func:`cell_text`."""
    out = []
    for row in rows[1:]:
        if row.count(None) + row.count("") == len(row):
            continue
        out.append([cell_text(row[i]) if i < len(row) else None for i in wanted])
    return out


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.one_of(CELL, st.just(None), st.just("")), min_size=1, max_size=6), min_size=1, max_size=10),
       st.data())
def test_the_columns_the_child_answers_are_the_text_of_its_rows(rows, data):
    """The reader's path (the child answers columns, their text made in Arrow) hands on, row for row and cell for
    cell, what the rows calamine reads made cell by cell: the same text, the same missing cells, the same rows."""
    book = workbook(rows)
    status, read = read_sheet(book, SHEET)
    answer, payload = dropxlsx.SheetRead(book, SHEET, mode="columns", cap=dropxlsx.CHILD_BASE_BYTES).result()
    assert (status, answer) == ("ok", "columns")
    width = len(read[0]) if read else 0
    wanted = data.draw(st.lists(st.integers(0, max(width - 1, 0)), unique=True, max_size=width)) if width else []
    expected = by_rows(read, wanted)
    assert payload[1] == max(len(read) - 1, 0)
    if not payload[1]:
        assert expected == []
        return
    columns, longest = dropxlsx.sheet_columns(payload, wanted)
    got = [list(row) for row in zip(*(c.to_pylist() for c in columns), strict=True)] if wanted else [[]] * len(
        [r for r in read[1:] if r.count(None) + r.count("") != len(r)])
    assert got == expected
    assert longest == max((len(v) for row in expected for v in row if v is not None), default=0)


def test_an_excel_mangled_identity_number_keeps_its_float_text():
    data = workbook([["身份证号码"], [1.10105e17], [110105491231002]])
    assert by_calamine(data)[1:] == [["1.10105e+17"], ["110105491231002"]] == by_openpyxl(data)[1:]


def _sheet_xml(cells: bytes) -> io.BytesIO:
    return io.BytesIO(b'<worksheet><dimension ref="A1:XFD1048576"/><sheetData>' + cells + b"</sheetData></worksheet>")


@pytest.mark.parametrize(("cells", "extent"), [
    (b'<row r="1"><c r="A1"/><c r="C1"/></row><row r="7"><c r="B7"/></row>', (7, 3, 3)),
    (b"<row><c/><c/><c/></row><row><c/></row>", (2, 3, 4)),  # no references: in their places
    (b'<x:row r="2"><x:c r="XFD2"/></x:row>', (2, 16384, 1)),  # a namespace prefix
    (b"<row r='3'><c r='B3' t='s'><v>1</v></c></row>", (3, 2, 1)),  # single quotes
    (b'<row r="1"><c r="A1"><v>1</v></c></row><c:chart r="ZZZ9"/>', (1, 1, 1)),  # a chart's element is no cell
])
def test_the_extent_is_where_a_reader_puts_the_cells(cells, extent):
    assert sheet_extent(_sheet_xml(cells)) == extent


@pytest.mark.parametrize(("cells", "says"), [
    (b'<row r="3"><c r="ZZZZZZ3"/></row>', "is not one"),
    (b'<row r="3"><c r="XFE3"/></row>', "outside a sheet's grid"),
    (b'<row r="3"><c r="A1048577"/></row>', "outside a sheet's grid"),
    (b'<row r="1048577"><c/></row>', "past the last row"),
    (b'<row r="3"><c r="a3"/></row>', "is not one"),
    (b'<row r="3"><c r="3A"/></row>', "is not one"),
    (b'<row r="x"><c/></row>', "is not one"),
])
def test_references_outside_the_grid_are_refused_before_any_reader(cells, says):
    with pytest.raises(ValueError, match=says):
        sheet_extent(_sheet_xml(cells))


def test_a_reference_split_between_two_reads_is_found(monkeypatch):
    xml = _sheet_xml(b'<row r="1"><c r="A1"/></row>' * 40000 + b'<row r="2"><c r="XFE2"/></row>')
    with pytest.raises(ValueError, match="XFE2"):
        sheet_extent(xml)


def test_a_reader_that_dies_on_a_file_is_the_files_fault_and_this_process_lives_on(monkeypatch):
    monkeypatch.setattr(dropxlsx, "_CHILD", "import os; os.abort()")
    status, why = read_sheet(workbook([["a"]]), SHEET)
    assert (status, why) == ("error", "the reader stopped on it: signal 6")


def test_a_missing_sheet_is_named():
    status, names = read_sheet(workbook([["a"]]), "没有这个表")
    assert status == "no sheet" and names == [SHEET]


def _with_a_far_cell(row: int) -> tuple[bytes, str]:
    """A one-prisoner workbook with one more cell at column XFD of ``row``; and its sheet's member name."""
    data = workbook([["罪犯编号"], ["ZF1"]])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {m.filename: z.read(m) for m in z.infolist()}
    sheet = next(k for k in members if k.startswith("xl/worksheets/"))
    members[sheet] = members[sheet].replace(
        b"</sheetData>", f'<row r="{row}"><c r="XFD{row}"><v>1</v></c></row></sheetData>'.encode())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, body in members.items():
            z.writestr(name, body)
    return out.getvalue(), sheet


def test_a_cell_far_out_makes_a_grid_too_large_for_the_limit(tmp_path, monkeypatch):
    """One cell at XFD1048576 would have calamine build a grid of 17 billion cells: refused by its extent."""
    data, sheet = _with_a_far_cell(1_048_576)
    with zipfile.ZipFile(io.BytesIO(data)) as z, z.open(sheet) as stream:
        rows, cols, cells = sheet_extent(stream)
    assert (rows * cols, cells) == (1_048_576 * 16_384, 3)


def test_a_capped_reader_stops_on_a_grid_too_large_for_its_cap():
    """calamine may start on a sheet before its references are checked: its child's address space is capped, so a
    stray cell far out stops the child (its grid cannot be allocated) instead of taking the machine's memory."""
    data, _ = _with_a_far_cell(400_000)
    cap = dropxlsx.CHILD_BASE_BYTES + dropxlsx.CHILD_XML_FACTOR * len(data) * 10
    status, why = dropxlsx.SheetRead(data, SHEET, mode="columns", cap=cap).result()
    assert status == "error", why


def test_whole_numbers_keep_their_text_up_to_where_python_turns_to_an_exponent():
    data = workbook([["x"], [2.0 ** 53], [9999999999999998.0], [1e16], [-12.0], [12.5]])
    assert by_calamine(data) == by_openpyxl(data)
    assert [r[0] for r in by_calamine(data)[1:]] == ["9007199254740992", "9999999999999998", "1e+16", "-12", "12.5"]
