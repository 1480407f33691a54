"""The cell-reference check's fast passes (connectors/xlsxscan.py: numpy_extent, connectors/dropxlsx.py:
_plain_extent) measure exactly what the tag-by-tag scan measures — the same extent, or the same first error — whatever the tags and wherever the
reads split the sheet."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import dropxlsx
from connectors.dropxlsx import MAX_COLUMN, MAX_ROW, sheet_extent
from connectors.xlsxscan import numpy_extent

TAGS = [
    b'<row r="{r}">', b"</row>", b'<c r="{c}{r}"/>', b'<c r="{c}{r}" t="s"><v>1</v></c>', b"<c/>", b"<row>",
    b"<row r='{r}'>", b'<x:c r="{c}{r}"/>', b'<c t="s" r="{c}{r}"/>', b"<!-- <c r=\"ZZZ{r}\"> -->",
    b'<c r="{c}0"/>', b'<row r="0{r}">', b'<c r="XFE{r}"/>', b'<row r="1048577">', b'<c r="a{r}"/>',
    b"<v>&lt;c r=&quot;B2&quot;&gt;</v>", b'<c r="{c}{r}"t="s"/>', b"<![CDATA[<c r=\"A9\">]]>",
]


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes a read: splits fall anywhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.at = data, step, 0

    def read(self, size: int = -1) -> bytes:
        piece = self.data[self.at:self.at + min(self.step, size if size > 0 else self.step)]
        self.at += len(piece)
        return piece


def scanned(data: bytes) -> tuple[int, int, int] | str:
    state = [0, 0, 0, 0, 0]
    try:
        dropxlsx._scan(data, state)
    except ValueError as exc:
        return str(exc)
    return state[0], state[1], state[2]


def measured(stream) -> tuple[int, int, int] | str:
    try:
        return sheet_extent(stream)
    except ValueError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TAGS), st.integers(1, 40), st.sampled_from(["A", "C", "Z", "AB", "XFD"])),
                max_size=40),
       st.integers(1, 64), st.booleans())
def test_the_fast_pass_measures_what_the_scan_measures(tags, step, plain_only):
    chosen = [(t, r, c) for t, r, c in tags if not plain_only or t in TAGS[:4]]
    body = b"".join(t.replace(b"{r}", str(r).encode()).replace(b"{c}", c.encode()) for t, r, c in chosen)
    data = b"<worksheet><sheetData>" + body + b"</sheetData></worksheet>"
    assert measured(io.BytesIO(data)) == scanned(data)
    assert measured(Trickle(data, step)) == scanned(data)


@pytest.mark.parametrize("body", [
    b'<row r="1"><c r="A1"/><c r="C1"/></row><row r="7"><c r="B7"/></row>',
    b'<row r="2"><c r="B2"/>' + b'<c r="C2"/>' * 3 + b"<c/><c/></row>",  # plain, then cells in their places
])
def test_a_plain_stretch_hands_its_row_and_column_to_the_next(body):
    data = b"<worksheet><sheetData>" + body + b"</sheetData></worksheet>"
    for step in (1, 5, 17, len(data)):
        assert measured(Trickle(data, step)) == scanned(data)


#: more shapes for the numpy pass: text in a cell, a prefixed element, near-plain tags, a tag cut off by the stretch
MORE_TAGS = [b'<c r="{c}{r}">x</c>', b"<c:chart r='{c}{r}'/>", b"<cols>", b'<row r="{r}"/>', b'<c r="{c}{r}\t"/>',
             b'<c r="{c}12345678"/>', b'<row r="{r}" <c/>', b"<c", b'<c r="{c}{r}', b"<v>08:30 a:c b:row</v>"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([*TAGS, *MORE_TAGS]),
                          st.integers(1, 40), st.sampled_from(["A", "C", "Z", "AB", "XFD", "XFE", "ABCD"])),
                max_size=40),
       st.lists(st.integers(0, 4), min_size=5, max_size=5), st.booleans())
def test_the_numpy_pass_measures_what_the_scan_measures_or_declines(tags, start, plain_only):
    """Given any state a stretch may start in, the numpy pass either declines (the state untouched) or leaves the
    state the tag-by-tag scan leaves — the row and column a reader is at included."""
    chosen = [(t, r, c) for t, r, c in tags if not plain_only or t in TAGS[:4]]
    body = b"".join(t.replace(b"{r}", str(r).encode()).replace(b"{c}", c.encode()) for t, r, c in chosen)
    state = list(start)
    if numpy_extent(body, state, MAX_ROW, MAX_COLUMN):
        expected = list(start)
        dropxlsx._scan(body, expected)
        assert state == expected
    else:
        assert state == list(start)
    if plain_only and all(c in ("A", "C", "Z", "AB", "XFD") for _, _, c in chosen):
        assert numpy_extent(body, list(start), MAX_ROW, MAX_COLUMN)  # the writers' form is measured by it
