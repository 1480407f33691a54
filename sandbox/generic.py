"""Rows for a feed the generator has no builder for, drawn from its contract alone.

A feed onboarded with a config and a contract (and no sandbox entry, sandbox/simulated.py) is still
served by the sandbox: :func:`contract_rows` draws rows that satisfy every rule of the contract
(contracts/rules.py) — identity numbers, names, genders and birth dates of synthetic residents,
credit codes, values from an enumeration or matching a pattern, dates in order and not in the
future, amounts within range, unique keys — and an incremental timestamp in the year before as-of.

The residents are drawn from a stream of the feed's own and are nobody else in the city: not on the
benefit roll, in no other feed. A generic feed plants no truths, so the matching stage finds
nothing in it that a truth would have to explain. Deterministic: the same (feed, rows, seed,
as_of) gives the same frame.
"""

from __future__ import annotations

import importlib
import re
import zlib
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from contracts import Contract
from contracts.rules import contract_rules
from fundx.core.idcolumns import civil_from_days, make_uscc_matrix

__all__ = ["NotSimulated", "UnsupportedContract", "contract_rows", "generic_row_count"]

#: rows of a generic feed per resident of the city, and the fewest (a small city still pages and splits)
ROWS_PER_PERSON = 0.05
MIN_ROWS = 60
#: the events of a generic feed happen in the year before as-of; the latest dates may follow an event
#: by up to this many days (still before as-of: notFuture holds)
SPREAD_DAYS = 30


class NotSimulated(ValueError):
    """The sandbox cannot serve this feed; the message names the feed and why (its config asks for
    something the sandbox cannot hand to the exchange, or its contract for rows it cannot draw)."""


class UnsupportedContract(NotSimulated):
    """The contract asks for something the generic rows cannot give (the message says what)."""


def generic_row_count(people: int) -> int:
    """How many rows a generic feed has in a city of ``people``."""
    return max(MIN_ROWS, int(people * ROWS_PER_PERSON))


def contract_rows(contract: Contract, rows: int, *, seed: int, as_of: date) -> pd.DataFrame:
    """``rows`` rows of ``contract``'s columns, in contract order, each passing the contract's row rules.

    UnsupportedContract names the column whose rules the generic rows cannot meet.
    """
    from sandbox.city.place import load_place
    from sandbox.city.population import make_people
    from sandbox.city.text import day_number

    feed = contract.feed
    # a stream of the feed's own, seeded by its name: adding a feed changes no other feed's rows
    salt = zlib.crc32(feed.encode("utf-8"))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 103, salt])))
    extra = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 104, salt])))
    as_of_days = day_number(as_of)
    place = load_place()
    people = make_people(rng, rows, as_of_days, "adult", unique=True, place=place, extra=extra)
    ids = np.array(people.ids().to_pylist(), dtype=object)
    names = np.array(people.name.to_pylist(), dtype=object)
    birth_days = people.birth

    rules = contract_rules(contract)
    by_column: dict[str, list[Any]] = {}
    for rule in rules.row_rules:
        for name in rule.columns:
            by_column.setdefault(name, []).append(rule)

    def rules_of(column: str, kind: str) -> list[Any]:
        return [r for r in by_column.get(column, []) if r.kind == kind]

    identity = {c.name for c in contract.columns if c.pii == "identity_number"}
    identity |= {r.columns[0] for r in rules.row_rules if r.kind in ("identity_number", "area_code")}
    birth_of = {r.columns[1]: r.columns[0] for r in rules.row_rules if r.kind == "birth_date_matches_id"}

    # dates: an event day per row, each date column that many days after it in the order the
    # dateOrder rules ask (earlier before later); every date stays before as-of
    event = as_of_days - SPREAD_DAYS - 1 - rng.integers(0, 365 - SPREAD_DAYS, rows)
    date_columns = [c.name for c in contract.columns if c.logical_type == "date" and c.name not in birth_of]
    offsets = _date_offsets(date_columns, [r.columns for r in rules.row_rules if r.kind == "date_order"])

    out: dict[str, Any] = {}
    for column in contract.columns:
        name = column.name
        kind = column.logical_type
        if name in identity:
            out[name] = ids
        elif name in birth_of:
            out[name] = _iso_days(birth_days, civil_from_days)
        elif column.pii == "name":
            out[name] = names
        elif rules_of(name, "allowed_values"):
            values = list(rules_of(name, "allowed_values")[0].params["values"])
            if column.pii == "gender" and set(values) >= {"男", "女"}:
                out[name] = np.where(people.male, "男", "女").astype(object)
            else:
                out[name] = np.array([values[i] for i in rng.integers(0, len(values), rows)], dtype=object)
        elif rules_of(name, "credit_code"):
            kinds = np.ones(rows, dtype=np.int64)
            mat = make_uscc_matrix(kinds, place.codes[people.district], rng.integers(0, 10**8, rows))
            out[name] = np.array([bytes(r).decode("ascii") for r in mat], dtype=object)
        elif kind == "date":
            days = event + offsets.get(name, 0)
            low = _range_low(rules_of(name, "range"))
            if low is not None and (days < day_number(low)).any():
                raise UnsupportedContract(f"{feed}: {name}: a minimum after the year before as-of ({low})")
            out[name] = _iso_days(days, civil_from_days)
        elif kind == "timestamp":
            last = max(offsets.values(), default=0)
            seconds = (event + last + 1) * 86_400 + rng.integers(8 * 3600, 19 * 3600, rows)
            out[name] = _iso_seconds(seconds, civil_from_days)
        elif kind in ("number", "integer"):
            out[name] = _numbers(rng, rows, rules_of(name, "range"), integer=kind == "integer")
        elif kind == "boolean":
            out[name] = rng.random(rows) < 0.5
        elif kind == "string":
            out[name] = _strings(rng, rows, name, rules_of(name, "pattern"), rules_of(name, "length"),
                                 unique=name in contract.key or bool(rules_of(name, "unique")), feed=feed)
        else:
            raise UnsupportedContract(f"{feed}: {name}: logicalType {kind!r} has no generic values")
    _order_amounts(out, [r.columns for r in rules.row_rules if r.kind == "not_greater_than"])
    frame = pd.DataFrame({c.name: out[c.name] for c in contract.columns})
    if contract.incremental is not None:
        frame = frame.sort_values([contract.incremental, *contract.key], kind="stable").reset_index(drop=True)
    return frame


def _date_offsets(columns: list[str], orders: list[tuple[str, ...]]) -> dict[str, int]:
    """Days after the event for each date column: an earlier column of a dateOrder rule never after a later one."""
    depth = dict.fromkeys(columns, 0)
    for _ in range(len(columns)):  # longest chain of earlier -> later, bounded by the columns
        for earlier, later in orders:
            if earlier in depth and later in depth and depth[later] <= depth[earlier]:
                depth[later] = depth[earlier] + 1
    step = SPREAD_DAYS // max(1, max(depth.values(), default=0))
    return {c: d * step for c, d in depth.items()}


def _range_low(ranges: list[Any]) -> date | None:
    for rule in ranges:
        low = rule.params.get("min")
        if low is not None:
            return date.fromisoformat(str(low)[:10]) if rule.params.get("dates") else None
    return None


def _iso_days(days: np.ndarray, civil: Any) -> np.ndarray:
    y, m, d = civil(np.asarray(days, dtype=np.int64))
    return np.array([f"{a:04d}-{b:02d}-{c:02d}" for a, b, c in zip(y, m, d)], dtype=object)


def _iso_seconds(seconds: np.ndarray, civil: Any) -> np.ndarray:
    """Shanghai wall-clock seconds since 1970-01-01 as ISO 8601 with +08:00."""
    days, rest = np.divmod(np.asarray(seconds, dtype=np.int64), 86_400)
    y, m, d = civil(days)
    return np.array([f"{a:04d}-{b:02d}-{c:02d}T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+08:00"
                     for a, b, c, s in zip(y, m, d, rest)], dtype=object)


def _numbers(rng: np.random.Generator, n: int, ranges: list[Any], *, integer: bool) -> np.ndarray:
    low, high = 0.0, 10_000.0
    for rule in ranges:
        if rule.params.get("min") is not None:
            low = float(rule.params["min"])
        if rule.params.get("max") is not None:
            high = float(rule.params["max"])
    if low > high:
        raise UnsupportedContract(f"range {low} > {high}")
    if high - low > 10_000:
        high = low + 10_000  # amounts of a plausible size, inside the range
    if integer:
        return rng.integers(int(np.ceil(low)), int(np.floor(high)) + 1, n)
    return np.round(low + (high - low) * rng.random(n), 2)


def _order_amounts(out: dict[str, Any], pairs: list[tuple[str, ...]]) -> None:
    """notGreaterThan: the column is at most the other one (both numbers): take the smaller of each pair."""
    for column, than in pairs:
        a, b = np.asarray(out[column], dtype=float), np.asarray(out[than], dtype=float)
        out[column], out[than] = np.minimum(a, b), np.maximum(a, b)


def _strings(rng: np.random.Generator, n: int, name: str, patterns: list[Any], lengths: list[Any], *,
             unique: bool, feed: str) -> np.ndarray:
    low = max([int(r.params["min"]) for r in lengths if r.params.get("min") is not None], default=1)
    high = min([int(r.params["max"]) for r in lengths if r.params.get("max") is not None], default=64)
    if patterns:
        regex = patterns[0].params["regex"]
        try:
            draw = _Pattern(regex)
        except UnsupportedContract as exc:
            raise UnsupportedContract(f"{feed}: {name}: {exc}") from None
        values: list[str] = []
        seen: set[str] = set()
        for _ in range(n * 20):
            if len(values) == n:
                break
            value = draw(rng)
            if not low <= len(value) <= high or (unique and value in seen):
                continue
            seen.add(value)
            values.append(value)
        if len(values) < n:
            raise UnsupportedContract(f"{feed}: {name}: the pattern gives too few distinct values of the allowed length")
        return np.array(values, dtype=object)
    width = max(low, min(high, len(name) + 7))
    stem = name[: max(0, width - 7)].upper().replace("_", "-") or "V"
    values = [f"{stem}{i:07d}"[-width:] if len(f"{stem}{i:07d}") > width else f"{stem}{i:07d}"
              for i in range(1, n + 1)]
    if len({*values}) < n:
        raise UnsupportedContract(f"{feed}: {name}: maxLength {high} is too short for {n} distinct values")
    return np.array(values, dtype=object)


class _Pattern:
    """Random strings matching a regular expression of the usual contract kind: literals, character
    classes (sets, ranges, \\d, \\w), groups, alternatives and bounded repeats."""

    UNBOUNDED = 4  # what * and + repeat at most

    def __init__(self, regex: str) -> None:
        # the stdlib's own parse of the pattern (sre_parse's home since 3.11): no second regex grammar here
        parser: Any = importlib.import_module("re._parser")

        try:
            self.tree = parser.parse(regex)
        except re.error as exc:
            raise UnsupportedContract(f"pattern {regex!r} is not a regular expression ({exc})") from None
        self.regex = re.compile(regex)
        self._constants = parser
        self._check(self.tree)

    def __call__(self, rng: np.random.Generator) -> str:
        for _ in range(50):  # lookarounds aside, what is drawn matches; check anyway
            value = "".join(self._draw(self.tree, rng))
            if self.regex.fullmatch(value):
                return value
        raise UnsupportedContract(f"pattern {self.regex.pattern!r}: drawn values do not match it")

    def _check(self, tree: Any) -> None:
        c = self._constants
        allowed = {c.LITERAL, c.IN, c.MAX_REPEAT, c.MIN_REPEAT, c.SUBPATTERN, c.BRANCH, c.AT, c.ANY, c.NOT_LITERAL}
        for op, arg in tree:
            if op not in allowed:
                raise UnsupportedContract(f"pattern {self.regex.pattern!r} uses {op} (no generic values)")
            if op in (c.MAX_REPEAT, c.MIN_REPEAT):
                self._check(arg[2])
            elif op == c.SUBPATTERN:
                self._check(arg[3])
            elif op == c.BRANCH:
                for branch in arg[1]:
                    self._check(branch)

    def _draw(self, tree: Any, rng: np.random.Generator) -> list[str]:
        c = self._constants
        out: list[str] = []
        for op, arg in tree:
            if op == c.LITERAL:
                out.append(chr(arg))
            elif op == c.NOT_LITERAL:
                out.append("A" if arg != ord("A") else "B")
            elif op == c.ANY:
                out.append("x")
            elif op == c.IN:
                out.append(self._one_of(arg, rng))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                low, high, sub = arg
                high = low + self.UNBOUNDED if high == c.MAXREPEAT else high
                for _ in range(int(rng.integers(low, high + 1))):
                    out.extend(self._draw(sub, rng))
            elif op == c.SUBPATTERN:
                out.extend(self._draw(arg[3], rng))
            elif op == c.BRANCH:
                branches = arg[1]
                out.extend(self._draw(branches[int(rng.integers(0, len(branches)))], rng))
            # AT (^, $, \b): nothing to write
        return out

    def _one_of(self, items: Any, rng: np.random.Generator) -> str:
        c = self._constants
        choices: list[str] = []
        negate = False
        for op, arg in items:
            if op == c.NEGATE:
                negate = True
            elif op == c.LITERAL:
                choices.append(chr(arg))
            elif op == c.RANGE:
                choices.extend(chr(x) for x in range(arg[0], arg[1] + 1))
            elif op == c.CATEGORY:
                choices.extend(_CATEGORIES.get(str(arg), ""))
        if negate:
            excluded = set(choices)
            choices = [ch for ch in "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789" if ch not in excluded]
        if not choices:
            raise UnsupportedContract(f"pattern {self.regex.pattern!r}: a character class with no plain characters")
        return choices[int(rng.integers(0, len(choices)))]


_CATEGORIES = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_WORD": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "CATEGORY_SPACE": " ",
}
