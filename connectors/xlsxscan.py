"""The fastest pass of the xlsx cell-reference check (:func:`connectors.dropxlsx.sheet_extent`): a stretch of a
sheet's XML measured with numpy, every ``<`` of it at once, when its every c and row tag is in the form writers use.

It measures exactly what the regular-expression pass (``connectors.dropxlsx._plain_extent``) measures, and
declines (False, ``state`` untouched) wherever that pass could see anything else: a ``<`` inside a tag, a c or
row tag that is not plain (``<c r="B7"``, ``<row r="7"``: the reference first, double quotes, no prefix), a
namespace prefix anywhere near a c or row name (``:c``, ``:row``), a reference outside the grid. The stretch is
then measured by the slower passes, which name the first bad reference. ``tests/connectors/test_xlsx_extent.py``
holds the three passes to the same figures.
"""

from __future__ import annotations

import numpy as np

_LT, _GT, _QUOTE, _COLON = 60, 62, 34, 58
#: what may follow a tag's name or a plain reference's closing quote: \\s of a bytes pattern, / and >
_AFTER = np.zeros(256, dtype=bool)
_AFTER[[32, 9, 10, 13, 11, 12, 47, 62]] = True
_PAD = 32


def _leading(window: np.ndarray, low: int, high: int) -> np.ndarray:
    """How many bytes at the start of each row of ``window`` lie in low..high — 0 when all of them do (a run too
    long for a plain reference, which the callers refuse as they refuse none)."""
    return np.argmin((window >= low) & (window <= high), axis=1)


def _number(window: np.ndarray, length: np.ndarray, base: int, zero: int) -> np.ndarray:
    """The first ``length`` bytes of each row of ``window`` as a number (digits from ``zero`` in ``base``)."""
    out = np.zeros(len(window), dtype=np.int64)
    for j in range(window.shape[1]):
        take = j < length
        if not take.any():
            break
        out = np.where(take, out * base + (window[:, j].astype(np.int64) - zero), out)
    return out


def _reference(a: np.ndarray, starts: np.ndarray, letters: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plain, column, row) of the references that start at ``starts``: ``[A-Z]{1,3}`` (if ``letters``) then
    ``[1-9][0-9]{0,6}``, a closing quote and a byte that may follow it."""
    if letters:
        head = np.lib.stride_tricks.sliding_window_view(a, 4)[starts]  # a row per reference: its first bytes
        count = _leading(head, 65, 90)
        column = _number(head[:, :3], count, 26, 64)
        plain = (count >= 1) & (count <= 3)
    else:
        count = np.zeros(len(starts), dtype=np.int64)
        column = count
        plain = np.ones(len(starts), dtype=bool)
    rows = np.arange(len(starts))
    digits = np.lib.stride_tricks.sliding_window_view(a, 9)[starts + count]  # the bytes after the letters
    many = _leading(digits, 48, 57)
    row = _number(digits[:, :7], many, 10, 48)
    plain &= (many >= 1) & (many <= 7) & (digits[:, 0] != 48)
    ends = np.minimum(many, 7)
    plain &= (digits[rows, ends] == _QUOTE) & _AFTER[digits[rows, ends + 1]]
    return plain, column, row


def numpy_extent(body: bytes, state: list[int], max_row: int, max_column: int) -> bool:
    """Measure ``body`` into ``state`` (last row, last column, cells, the row and column a reader is at) if every
    c and row tag in it is plain and within the grid; else False, ``state`` untouched."""
    n = len(body)
    a = np.frombuffer(body + b"\0" * _PAD, dtype=np.uint8)
    colons = np.flatnonzero(a[:n] == _COLON) if b":" in body else np.zeros(0, dtype=np.int64)
    if len(colons) and (((a[colons + 1] == 99) & _AFTER[a[colons + 2]]) | ((a[colons + 1] == 114) & (a[colons + 2] == 111)
                                                                           & (a[colons + 3] == 119))).any():
        return False  # a namespace prefix, or text that looks like one (":c ", ":row"): the regular expressions decide
    marks = np.flatnonzero((a[:n] == _LT) | (a[:n] == _GT))  # every < and >, in order
    opens = a[marks] == _LT
    if (opens[:-1] & opens[1:]).any():  # a < before the previous <'s > : a < inside a tag
        return False
    lt = marks[opens]
    if len(lt) and opens[-1]:  # the last < has no > after it: no tag (the stretch's end)
        lt = lt[:-1]
    one = a[lt + 1]
    cells = lt[one == 99]
    cells = cells[_AFTER[a[cells + 2]]]  # <c
    rows = lt[one == 114]
    rows = rows[(a[rows + 2] == 111) & (a[rows + 3] == 119) & _AFTER[a[rows + 4]]]  # <row
    # the plain forms: <c r=" and <row r="
    if len(cells) and not ((a[cells + 2] == 32) & (a[cells + 3] == 114) & (a[cells + 4] == 61)
                           & (a[cells + 5] == _QUOTE)).all():
        return False
    if len(rows) and not ((a[rows + 4] == 32) & (a[rows + 5] == 114) & (a[rows + 6] == 61)
                          & (a[rows + 7] == _QUOTE)).all():
        return False
    last_row, last_col, count, row, col = state
    if len(cells):
        plain, columns, cell_rows = _reference(a, cells + 6, True)
        if not plain.all():
            return False
        widest, deepest = int(columns.max()), int(cell_rows.max())
        if widest > max_column or deepest > max_row:
            return False
        last_col = max(last_col, widest)
        last_row = max(last_row, deepest, row)  # a cell before this stretch's first row tag is in the current row
    if len(rows):
        plain, _, numbers = _reference(a, rows + 8, False)
        if not plain.all():
            return False
        highest = int(numbers.max())
        if highest > max_row:
            return False
        last_row = max(last_row, highest)
        row = int(numbers[-1])
        col = 0
    at_row, at_cell = body.rfind(b'<row r="'), body.rfind(b'<c r="')
    if len(cells) and at_cell > at_row:  # the stretch ends inside a row: a reader is at its last cell's column
        col = int(columns[-1])
    state[:] = [last_row, last_col, count + len(cells), row, col]
    return True
