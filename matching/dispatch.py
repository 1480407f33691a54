"""The district offices' files of a matching night: per district and per rule, CSV for Excel, masked identities
only, cells that a spreadsheet would run as formulas neutralised (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from matching.orders import RULES, Order, holds_identity_number

ORDER_COLUMNS = ("order_id", "rule", "规则", "district", "id_masked", "amount_at_risk", "months", "due_on")
SUSPECT_COLUMNS = ("order_id", "night", "rule", "规则", "area", "district", "id_masked", "amount_at_risk",
                   "months", "due_on", "detail")


def _cells(order: Order, columns: Sequence[str]) -> list[str]:
    values = {
        "order_id": order.order_id, "night": order.night.isoformat(), "rule": order.rule, "规则": order.title,
        "area": order.area, "district": order.district, "id_masked": order.id_masked or "",
        "amount_at_risk": f"{order.amount_at_risk:.2f}", "months": "" if order.months is None else str(order.months),
        "due_on": order.due_on.isoformat(), "detail": order.detail,
    }
    return [values[c] for c in columns]


#: a cell a spreadsheet would read as a formula (OWASP CSV injection): = + - @, tab, carriage return
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def neutralise_cell(text: str) -> str:
    """A cell as text a spreadsheet never runs: one starting like a formula gets a leading single quote
    (OWASP); plain numbers (-12.50) are left as they are."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _csv(orders: Sequence[Order], columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for o in orders:
        writer.writerow([neutralise_cell(c) for c in _cells(o, columns)])
    text = buffer.getvalue()
    if holds_identity_number(text):  # record() refused them already; a last look before anything leaves
        raise ValueError("an order's id_masked or detail holds an unmasked identity number; nothing written")
    return text.encode("utf-8-sig")  # the BOM lets Excel read the Chinese columns


def write_dispatch(folder: Path, orders: Iterable[Order]) -> list[Path]:
    """The night's files for the district offices, in ``folder`` (0700): per district (area code)
    ``orders-<area>.csv`` and per rule ``suspects-<rule>.csv``, for the districts and rules that
    have orders. UTF-8 with a BOM (Excel), 0600, each written atomically; masked identities only
    (no subject tokens). Returns the paths written, districts first.
    """
    from fundx.core.files import write_file_atomic

    chosen = sorted(orders, key=lambda o: (o.area, o.order_id))
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: list[tuple[Path, bytes]] = []
    for area in sorted({o.area for o in chosen}):
        files.append((folder / f"orders-{area}.csv", _csv([o for o in chosen if o.area == area], ORDER_COLUMNS)))
    for rule in RULES:
        of_rule = sorted((o for o in chosen if o.rule == rule), key=lambda o: o.order_id)
        if of_rule:
            files.append((folder / f"suspects-{rule}.csv", _csv(of_rule, SUSPECT_COLUMNS)))
    for path, data in files:  # every file checked before the first is written
        write_file_atomic(path, data, 0o600)
    return [path for path, _ in files]
