"""Reading an agency's sample: a CSV file, an xlsx workbook, a JSON file or a URL answering JSON.

A CSV file is read as UTF-8 (with or without BOM) or GB18030, every value text; a workbook's first
sheet with the values as the workbook types them; JSON as records (a list, or an object holding one
list). At most :data:`MAX_ROWS` rows are read. Messages name the source (a URL without its query,
which may hold a token or an identity number), never a value.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fundx.core.errors import ConfigurationError

#: rows read from a sample at most
MAX_ROWS = 100_000
URL_TIMEOUT = (5.0, 30.0)  # seconds: connect, read


class InferError(ConfigurationError):
    """A sample that cannot be read or drafted from; the message names the source, never a value."""

    default_action = "check the sample: a CSV with a header row, an xlsx workbook, or a URL answering JSON records"


@dataclass
class Sample:
    """The rows of a sample: headers in order, each row's values (text or typed), and where they came from."""

    source: str  # as messages show it: a file name, or a URL without its query
    kind: str  # csv, xlsx, json
    headers: list[str]
    rows: list[list[Any]]
    object_name: str | None = None  # the sheet, file or endpoint (the schema object's physicalName)
    encoding: str | None = None
    truncated: bool = False


# --- reading samples ------------------------------------------------------------------------------


def is_url(source: str) -> bool:
    """Whether the sample argument is an http(s) URL."""
    return bool(re.match(r"^https?://", source.strip(), re.I))


def safe_url(url: str) -> str:
    """A URL as messages may show it: scheme, host and path (a query may hold a token or an identity number)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def decode_csv(data: bytes, where: str) -> tuple[str, str]:
    """The text of a CSV file and the encoding it was read in: UTF-8 with BOM, UTF-8, else GB18030."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        raise InferError(f"{where}: neither UTF-8 nor GB18030 text") from None


def read_csv(path: Path, *, max_rows: int = MAX_ROWS) -> Sample:
    """A CSV sample: the first row is the header; every value is text."""
    where = path.name
    text, encoding = decode_csv(path.read_bytes(), where)
    head = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(head, delimiters=",\t;|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        headers = next(reader)
    except StopIteration:
        raise InferError(f"{where}: empty file (no header row)") from None
    rows: list[list[Any]] = []
    truncated = False
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(rows) >= max_rows:
            truncated = True
            break
        rows.append(row)
    return Sample(where, "csv", headers, rows, object_name=path.name, encoding=encoding, truncated=truncated)


def read_xlsx(path: Path, *, max_rows: int = MAX_ROWS) -> Sample:
    """An xlsx sample: the first sheet, its first row the header; values as the workbook types them."""
    from openpyxl import load_workbook

    where = path.name
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zipfile.BadZipFile, KeyError, InvalidFileException...
        raise InferError(f"{where}: not a readable xlsx workbook ({type(exc).__name__})") from None
    try:
        sheet = book.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        headers = next(values, None)
        if headers is None:
            raise InferError(f"{where}: the first sheet is empty (no header row)")
        rows: list[list[Any]] = []
        truncated = False
        for row in values:
            if row is None or all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
                continue
            if len(rows) >= max_rows:
                truncated = True
                break
            rows.append(list(row))
        width = max([len(headers)] + [len(r) for r in rows])
        head = ["" if h is None else str(h) for h in headers] + [""] * (width - len(headers))
        while head and not head[-1].strip() and all(len(r) < len(head) or r[len(head) - 1] is None for r in rows):
            head.pop()
        return Sample(where, "xlsx", head, rows, object_name=sheet.title, truncated=truncated)
    finally:
        book.close()


def records_sample(payload: Any, where: str, *, object_name: str | None = None, max_rows: int = MAX_ROWS) -> Sample:
    """A JSON sample: a list of records, or an object holding exactly one list of records."""
    records = payload
    if isinstance(payload, dict):
        lists = [(k, v) for k, v in payload.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if len(lists) != 1:
            found = ", ".join(k for k, _ in lists) or "none"
            raise InferError(f"{where}: a JSON object must hold exactly one list of records (found: {found})")
        key, records = lists[0]
        object_name = object_name or key
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise InferError(f"{where}: expected JSON records (a non-empty list of objects)")
    headers: list[str] = []
    seen: set[str] = set()
    for record in records[:max_rows]:
        for k in record:
            if k not in seen:
                seen.add(k)
                headers.append(str(k))
    rows = []
    for record in records[:max_rows]:
        row = []
        for h in headers:
            v = record.get(h)
            if isinstance(v, (dict, list)):
                v = json.dumps(v, ensure_ascii=False)  # nested: kept as text, typed string
            row.append(v)
        rows.append(row)
    return Sample(where, "json", headers, rows, object_name=object_name, truncated=len(records) > max_rows)


def read_url(url: str, *, headers: dict[str, str] | None = None, timeout: Any = URL_TIMEOUT,
             max_rows: int = MAX_ROWS) -> Sample:
    """A JSON sample from a URL (GET, with a timeout; the headers are never shown)."""
    import requests

    where = safe_url(url)
    try:
        response = requests.get(url, headers={"Accept": "application/json", **(headers or {})}, timeout=timeout)
    except requests.Timeout:
        raise InferError(f"{where}: no answer within {timeout} s") from None
    except requests.RequestException as exc:
        raise InferError(f"{where}: request failed ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise InferError(f"{where}: HTTP {response.status_code}")
    try:
        payload = response.json()
    except ValueError:
        raise InferError(f"{where}: the answer is not JSON") from None
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1] or None
    return records_sample(payload, where, object_name=name, max_rows=max_rows)


def read_sample(source: str | Path, *, headers: dict[str, str] | None = None, max_rows: int = MAX_ROWS) -> Sample:
    """A sample from a CSV or xlsx file, a JSON file, or a URL answering JSON."""
    text = str(source)
    if is_url(text):
        return read_url(text, headers=headers, max_rows=max_rows)
    path = Path(source)
    if not path.is_file():
        raise InferError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return read_csv(path, max_rows=max_rows)
    if suffix in (".xlsx", ".xlsm"):
        return read_xlsx(path, max_rows=max_rows)
    if suffix == ".json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise InferError(f"{path.name}: not JSON text") from None
        return records_sample(payload, path.name, object_name=path.name, max_rows=max_rows)
    raise InferError(f"{path.name}: unknown kind of sample {suffix or '(no suffix)'!r}; use .csv, .xlsx, .json or a URL")
