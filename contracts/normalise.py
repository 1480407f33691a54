"""The declared normalisation of a feed's columns, applied before any check and recorded.

Each text column lists its steps in the contract (``customProperties: normalise``):

- ``trim``: leading and trailing white space, including the ideographic space (U+3000);
- ``halfwidth``: full-width digits and letters to ASCII (１２３ -> 123, Ｘ -> X);
- ``upperX``: a lower-case x check character to X;
- ``date``: the date forms agencies send to ISO (2021/4/12, 2021年4月12日, 20210412 -> 2021-04-12);
- ``upgrade15``: a first-generation 15-digit identity number to its 18-character form (GB 11643-1999:
  "19" before the 6-digit birth date, then the MOD 11-2 check character), so that it joins the same
  person's other records; only on identity-number columns of feeds whose contract declares it
  (paper-born registers), elsewhere a 15-digit number fails its format check;
- ``zone:<name>`` (implicit, for a timestamp column with ``logicalTypeOptions.defaultTimezone``):
  a timestamp written without an offset, as a database's local-time text is (2025-11-01 07:56:55),
  is read in that zone and written ISO 8601 with its offset (2025-11-01T07:56:55+08:00).

Nothing is guessed: a value that fits none of these stays as it was and fails its checks (an
Excel-mangled number such as 1.10105E+17 is never "repaired"). Columns that arrive typed (dates
and numbers from the database feed) are left alone. The record says how many values each step
changed in each column, never which values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from contracts import Contract
from contracts.checks import iso_form, present
from contracts.rules import ZONE_STEP, Normalisation, contract_rules
from fundx.core.idcolumns import arrow_text, upgrade15_rows
from fundx.core.threads import thread_map

_FULLWIDTH = "０１２３４５６７８９ＸＸｘ"
#: The date forms agencies send, each with the regex that reads it (year, month, day groups).
DATE_FORMATS: dict[str, str] = {
    "yyyy/M/d": r"^(?P<y>[0-9]{4})/(?P<m>[0-9]{1,2})/(?P<d>[0-9]{1,2})$",
    "yyyy年M月d日": r"^(?P<y>[0-9]{4})年(?P<m>[0-9]{1,2})月(?P<d>[0-9]{1,2})日$",
    "yyyyMMdd": r"^(?P<y>[0-9]{4})(?P<m>[0-9]{2})(?P<d>[0-9]{2})$",
    "yyyy-M-d": r"^(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})$",
}
_ISO = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: a timestamp without an offset: 2025-11-01 07:56:55 or 2025-11-01T07:56:55.123
_NAIVE_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?$"


@dataclass
class NormalisationRecord:
    """How many values each step changed, per column (counts only; no values)."""

    changed: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, column: str, kind: str, count: int) -> None:
        """Count ``count`` values of ``column`` changed by ``kind``."""
        if count:
            self.changed.setdefault(column, {})[kind] = self.changed.get(column, {}).get(kind, 0) + int(count)

    @property
    def total(self) -> int:
        """Values changed in all."""
        return sum(sum(kinds.values()) for kinds in self.changed.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        """The record as plain data."""
        return {c: dict(sorted(k.items())) for c, k in sorted(self.changed.items())}


def _is_text_column(series: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return True
    if series.dtype != object:
        return False
    # object columns: text unless they hold other things (dates from a database)
    sample = series.dropna().head(64)
    return len(sample) == 0 or all(isinstance(v, str) for v in sample)


def _changed(before: pa.Array, after: pa.Array) -> int:
    return int(pc.sum(pc.fill_null(pc.not_equal(before, after), False).cast(pa.int64())).as_py() or 0)


def _bytes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A text array's values as where each starts and ends in its bytes, and the bytes."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    offsets = offsets[arr.offset: arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    return offsets[:-1], offsets[1:], np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, np.uint8)


def _trim(arr: pa.Array) -> pa.Array:
    trimmed = pc.utf8_trim_whitespace(arr)
    # trimming only takes characters away: a value it changed is shorter (no text compared); none: the input back
    if pc.all(pc.equal(pc.binary_length(trimmed), pc.binary_length(arr))).as_py() is not False:
        return arr
    return trimmed


def iso_dates(arr: pa.Array) -> np.ndarray:
    """Whether each value is written yyyy-MM-dd (``_ISO``, by its bytes); missing values True. (Parsed once with
    the date rules' days within contracts.checks.shared_work(): contracts.checks.iso_form.)"""
    out = ~present(arr)
    form = iso_form(arr)
    out[form.pos] = form.shape
    return out


def maybe_naive(arr: pa.Array) -> np.ndarray:
    """Whether each value may be a timestamp without an offset (``_NAIVE_TIMESTAMP``): 19 bytes, or 21 to 29 with a
    '.' after the seconds — a superset, which the regex then judges."""
    start, end, raw = _bytes(arr)
    lengths = end - start
    longer = (lengths >= 21) & (lengths <= 29)
    return (lengths == 19) | (longer & (raw[np.where(longer, start + 19, 0)] == 46))


def _halfwidth(arr: pa.Array) -> pa.Array:
    # Only values with non-ASCII characters can hold full-width forms: translate just those.
    ascii_ = pc.fill_null(pc.string_is_ascii(arr), True).to_numpy(zero_copy_only=False)
    odd = np.flatnonzero(~ascii_)
    if len(odd) == 0:
        return arr
    table = str.maketrans({chr(0xFF10 + i): str(i) for i in range(10)} | {"Ｘ": "X", "ｘ": "x", "\u3000": " "})
    fixed = [v.translate(table) for v in arr.take(pa.array(odd)).to_pylist()]  # the few odd values only
    return pc.replace_with_mask(arr, pa.array(~ascii_), pa.array(fixed, type=arr.type))


def _upper_x(arr: pa.Array) -> pa.Array:
    hit = pc.fill_null(pc.ends_with(arr, "x"), False)  # a plain suffix test first: few values end in x
    if not pc.any(hit).as_py():
        return arr
    return pc.replace_with_mask(arr, hit, pc.replace_substring_regex(arr.filter(hit), pattern="x$", replacement="X"))


def _dates(arr: pa.Array, column: str, record: NormalisationRecord) -> pa.Array:
    iso = iso_dates(arr)
    todo = np.flatnonzero(~iso)
    if len(todo) == 0:
        return arr
    values = arr.take(pa.array(todo))
    result = pc.cast(values, pa.large_string())
    done = np.zeros(len(todo), dtype=bool)
    for name, regex in DATE_FORMATS.items():
        hit = pc.fill_null(pc.match_substring_regex(values, regex), False).to_numpy(zero_copy_only=False) & ~done
        if not hit.any():
            continue
        parts = pc.extract_regex(values, regex)
        y = pc.struct_field(parts, "y")
        m = pc.utf8_lpad(pc.struct_field(parts, "m"), 2, "0")
        d = pc.utf8_lpad(pc.struct_field(parts, "d"), 2, "0")
        iso_text = pc.binary_join_element_wise(y, m, d, pa.scalar("-", pa.large_string()))
        result = pc.if_else(pa.array(hit), iso_text, result)
        done |= hit
        record.add(column, f"date {name}", int(hit.sum()))
    return pc.replace_with_mask(pc.cast(arr, pa.large_string()), pa.array(~iso), result)


def _zone(arr: pa.Array, zone: str, column: str, record: NormalisationRecord) -> pa.Array:
    todo = np.flatnonzero(maybe_naive(arr))
    if len(todo):
        naive = pc.fill_null(pc.match_substring_regex(arr.take(pa.array(todo)), _NAIVE_TIMESTAMP), False)
        todo = todo[naive.to_numpy(zero_copy_only=False)]
    if len(todo) == 0:
        return arr
    values = pc.cast(arr.take(pa.array(todo)), pa.large_string())
    try:  # Arrow parses ISO 8601 text in C; a value it cannot read (Feb 30) falls back to pandas, as NaT
        moments = pd.Series(pc.cast(values, pa.timestamp("ns")).to_pandas())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        moments = pd.Series(pd.to_datetime(values.to_numpy(zero_copy_only=False), format="ISO8601", errors="coerce"))
    local = moments.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    # a time that does not exist or is ambiguous in the zone (a DST change) stays as sent and fails its check
    ok = local.notna().to_numpy()
    seconds = (moments - local.dt.tz_convert("UTC").dt.tz_localize(None)).dt.total_seconds()
    distinct, inverse = np.unique(seconds.fillna(0).to_numpy(dtype=np.int64), return_inverse=True)
    labels = pa.array([f"{'+' if o >= 0 else '-'}{abs(int(o)) // 3600:02d}:{abs(int(o)) % 3600 // 60:02d}"
                       for o in distinct], type=pa.large_string())
    suffix = labels.take(pa.array(inverse.astype(np.int64)))
    text = pc.binary_join_element_wise(pc.replace_substring(values, " ", "T", max_replacements=1), suffix,
                                       pa.scalar("", pa.large_string()))
    record.add(column, f"zone {zone}", int(ok.sum()))
    if ok.all() and len(todo) == len(arr):  # the usual case: every value local-time text
        return text
    mask = np.zeros(len(arr), dtype=bool)
    mask[todo[ok]] = True
    return pc.replace_with_mask(pc.cast(arr, pa.large_string()), pa.array(mask), text.filter(pa.array(ok)))


def _upgrade15(arr: pa.Array) -> pa.Array:
    pos, mat = upgrade15_rows(arr)
    if len(pos) == 0:
        return arr
    mask = np.zeros(len(arr), dtype=bool)
    mask[pos] = True
    offsets = np.arange(0, 18 * (len(pos) + 1), 18, dtype=np.int64)  # fixed-width text straight into Arrow
    upgraded = pa.LargeStringArray.from_buffers(len(pos), pa.py_buffer(offsets),
                                                pa.py_buffer(np.ascontiguousarray(mat).reshape(-1)))
    return pc.replace_with_mask(arr, pa.array(mask), upgraded.cast(arr.type))


def _steps(spec: Normalisation, values: pd.Series) -> tuple[pa.Array, NormalisationRecord]:
    """One column's declared steps, in order: its values after them, and what each changed."""
    record = NormalisationRecord()
    arr = arrow_text(values)
    for step in spec.steps:
        if step == "date":
            arr = _dates(arr, spec.column, record)
            continue
        if step.startswith(ZONE_STEP):
            arr = _zone(arr, step[len(ZONE_STEP):], spec.column, record)
            continue
        before = arr
        arr = {"trim": _trim, "halfwidth": _halfwidth, "upperX": _upper_x, "upgrade15": _upgrade15}[step](arr)
        if arr is not before:  # a step with nothing to repair gives its input back
            record.add(spec.column, step, _changed(before, arr))
    return arr, record


def normalise(contract: Contract, frame: pd.DataFrame) -> tuple[pd.DataFrame, NormalisationRecord]:
    """The frame with the contract's declared normalisation applied (a copy), and what changed. The columns are
    independent: they are normalised side by side (Arrow's kernels release the GIL)."""
    record = NormalisationRecord()
    out = frame.copy(deep=False)
    specs = [spec for spec in contract_rules(contract).normalisation
             if spec.column in out.columns and _is_text_column(out[spec.column])]
    columns = [out[spec.column] for spec in specs]
    if len({spec.column for spec in specs}) == len(specs):
        done = thread_map(lambda i: _steps(specs[i], columns[i]), range(len(specs)))
    else:  # a column named twice: its steps in turn, each on the last one's result
        done = []
        for spec in specs:
            done.append(_steps(spec, out[spec.column]))
            out[spec.column] = pd.Series(done[-1][0], index=out.index, dtype="str")
    for spec, (arr, changed) in zip(specs, done, strict=True):
        for column, kinds in changed.changed.items():
            for kind, count in kinds.items():
                record.add(column, kind, count)
        out[spec.column] = pd.Series(arr, index=out.index, dtype="str")
    return out, record
