"""Draft an ODCS v3 contract from an agency's sample (``fundx contract infer``).

Onboarding a new agency starts from a sample of its data: a CSV file (UTF-8, UTF-8 with BOM or
GB18030), an xlsx workbook (its first sheet) or a URL answering JSON (a list of records, or an object
holding one list of records). :func:`infer_contract` reads it and guesses, column by column:

- the logical name: ASCII headers in snake_case; Chinese headers through :data:`HEADER_NAMES`
  (身份证号 -> id_number, 姓名 -> name, 死亡日期 -> death_date, ...), else ``col_<position>``; the
  agency's own header stays as ``physicalName``;
- the logicalType (string, integer, number, date, timestamp, boolean) and ``required`` (no empty
  value in the sample);
- formats it recognises: resident identity numbers (GB 11643, valid check character), unified
  social credit codes (GB 32100), mobile and landline phone numbers, dates (ISO, 2021/4/12,
  2021年4月12日), timestamps, and the character-class shape of codes (``^[A-Z]{4}[0-9]{12}$``);
- the primary key: a column unique and non-empty in every row, preferring names such as ``*_id``,
  ``id``, ``uscc``, ``*编号``;
- personal data: identity numbers, personal names, phone numbers, addresses, gender, birth and
  event dates and the sensitive categories of the existing contracts (criminal_record, health,
  religion), classified ``restricted`` with ``pii: <kind>`` exactly as the live contracts do, other
  columns ``internal`` with ``pii: none``.

Every guess a person must confirm carries ``customProperties: reviewNeeded: true`` with a note in its
``description``, and the YAML comment at the top lists them; ``fundx contract release`` refuses a
contract that still holds one. The draft loads with :func:`contracts.load_contract`, compiles to its
rules and SLAs, and is valid under the ODCS JSON schema.

Personal data never leaves this module: notes, comments, summaries and patterns hold column names,
types, format names and counts, never a sample value (a pattern is a shape of character classes,
never a value's characters).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from fundx.core.areacodes import is_known_area_code
from fundx.core.creditcodes import is_valid_uscc
from fundx.core.errors import ConfigurationError
from fundx.core.identity import is_valid_id, normalize_id, upgrade_id15

#: the share of a column's non-empty values a format must fit to be recognised (a sample may hold
#: a few broken values: those are counted in the column's review note, never shown)
FORMAT_SHARE = 0.9
#: ... and for identity numbers, which agencies' samples often hold Excel-mangled or mistyped
ID_SHARE = 0.8
#: rows read from a sample at most
MAX_ROWS = 100_000
URL_TIMEOUT = (5.0, 30.0)  # seconds: connect, read
API_VERSION = "v3.1.0"  # as the live contracts

ID_PATTERN = "^[0-9]{17}[0-9X]$"
USCC_PATTERN = "^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$"
MOBILE_PATTERN = "^1[3-9][0-9]{9}$"
PHONE_PATTERN = "^(?:1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$"

#: common Chinese headers of agency files and the logical names the live contracts give them
HEADER_NAMES: dict[str, str] = {
    "身份证号": "id_number", "身份证号码": "id_number", "公民身份号码": "id_number", "身份证": "id_number",
    "居民身份证号码": "id_number", "证件号码": "id_number", "证件号": "id_number",
    "姓名": "name", "名字": "name", "性别": "gender", "民族": "ethnicity",
    "出生日期": "birth_date", "死亡日期": "death_date", "火化日期": "cremation_date", "殡仪馆": "funeral_home",
    "户籍注销日期": "cancelled_on", "派出所": "police_station",
    "登记编号": "record_id", "记录编号": "record_id", "编号": "record_id", "登记日期": "registered_on",
    "统一社会信用代码": "uscc", "企业名称": "company_name", "单位名称": "company_name",
    "法定代表人": "legal_rep_name", "法定代表人姓名": "legal_rep_name",
    "法定代表人身份证号": "legal_rep_id_number", "法定代表人身份证号码": "legal_rep_id_number",
    "经营状态": "status", "登记状态": "status", "成立日期": "established_on", "注销日期": "deregistered_on",
    "联系电话": "phone", "电话": "phone", "电话号码": "phone", "手机": "mobile", "手机号": "mobile", "手机号码": "mobile",
    "地址": "address", "住址": "address", "家庭住址": "address", "户籍地址": "registered_address",
    "居住地址": "address", "联系地址": "address",
    "罪犯编号": "prisoner_id", "入监日期": "admitted_on", "刑期起日": "sentence_start", "刑期止日": "sentence_end",
    "羁押状态": "custody_status", "监狱名称": "prison",
    "宗教活动场所": "venue",
    "医院编码": "hospital_code", "诊断编码": "diagnosis_code", "入院日期": "admitted_on", "出院日期": "discharged_on",
    "总金额": "total_amount", "统筹支付金额": "fund_amount", "结算时间": "settled_at",
    "金额": "amount", "日期": "date", "备注": "remark", "序号": "seq_no",
    "更新时间": "updated_at", "修改时间": "updated_at", "变更时间": "changed_at", "创建时间": "created_at",
}

#: header words (Chinese or in the logical name) that say a column holds personal data of a kind
#: (``pii`` as the live contracts write it), checked in this order
PII_HEADER_WORDS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("identity_number", ("身份证", "身份号码", "证件号"), ("id_number", "idcard", "id_card", "id_no")),
    ("phone", ("电话", "手机", "联系方式"), ("phone", "mobile", "tel")),
    ("address", ("地址", "住址", "居住地", "户籍地"), ("address", "addr")),
    ("gender", ("性别",), ("gender", "sex")),
    ("birth_date", ("出生",), ("birth", "dob")),
    ("event_date", ("死亡", "火化"), ("death", "cremation")),
    ("criminal_record", ("罪", "刑期", "入监", "羁押", "监狱"), ("prisoner", "sentence", "custody", "prison", "crime")),
    ("health", ("诊断", "疾病", "病历", "入院", "出院", "死因"), ("diagnosis", "disease", "discharged", "cause")),
    ("religion", ("宗教", "寺", "教堂"), ("religio",)),
    ("ethnicity", ("民族",), ("ethnic",)),
    ("financial", ("银行", "账号", "卡号"), ("bank", "account_no", "card_no")),
)
_NOT_PERSONAL_NAME = ("company", "enterprise", "org", "unit", "hospital", "venue", "prison", "station", "home",
                      "企业", "单位", "公司", "机构", "医院", "场所", "监狱", "派出所", "殡仪馆")
_KEY_WORDS = ("编号", "代码", "编码", "流水号")

# --- recognisers (each looks at one stripped text value) -------------------------------------------

_DATE_FORMS: dict[str, re.Pattern[str]] = {
    "yyyy-MM-dd": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
    "yyyy-M-d": re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    "yyyy/M/d": re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    "yyyy年M月d日": re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
}
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")  # only with a date-like header
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$"
    r"|^\d{4}/\d{1,2}/\d{1,2} \d{1,2}:\d{2}(?::\d{2})?$"
)
_INTEGER = re.compile(r"^[+-]?(?:0|[1-9]\d{0,14})$")
_NUMBER = re.compile(r"^[+-]?(?:\d{1,15}(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")  # longer digit runs are codes
_BOOLEAN = {"true", "false"}
_MOBILE = re.compile(MOBILE_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_PERSON_NAME = re.compile(r"^(?:[\u4e00-\u9fff]{2,4}|[\u4e00-\u9fff]{1,10}[·・][\u4e00-\u9fff]{1,10})$")
_ADDRESS = re.compile(r"[\u4e00-\u9fff].*\d.*[路街号弄巷村室幢栋单元组]|[省市区县镇乡].*[路街巷弄村].*\d")
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
_DATE_HEADER = re.compile(r"日期|时间|日$|date|_on$|_at$|time|day", re.I)


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


@dataclass
class ColumnDraft:
    """What the sample says about one column, and what a person must look at."""

    position: int  # 1-based
    physical: str
    name: str
    logical_type: str = "string"
    options: dict[str, Any] = field(default_factory=dict)
    required: bool = False
    unique: bool = False
    primary_key: bool = False
    classification: str = "internal"
    pii: str = "none"
    normalise: list[str] = field(default_factory=list)
    enum: list[str] | None = None
    quality: list[dict[str, Any]] = field(default_factory=list)
    incremental: bool = False
    rows: int = 0
    empty: int = 0
    distinct: int = 0
    recognised: str | None = None  # identity_number, uscc, phone, name, address, shape, date formats...
    review: list[str] = field(default_factory=list)

    @property
    def filled(self) -> int:
        """Non-empty values in the sample."""
        return self.rows - self.empty


@dataclass
class Draft:
    """A drafted contract: the document, its YAML text, and the columns as guessed."""

    feed: str
    sample: Sample
    columns: list[ColumnDraft]
    document: dict[str, Any]
    review: list[str]  # contract-level items to review
    text: str

    @property
    def review_count(self) -> int:
        """Items marked reviewNeeded (columns and contract)."""
        return sum(1 for c in self.columns if c.review) + (1 if self.review else 0)


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


# --- names ------------------------------------------------------------------------------------------


def snake_case(header: str) -> str | None:
    """An ASCII header in snake_case (DeathDate, death-date, Death Date -> death_date); None when not ASCII."""
    text = unicodedata.normalize("NFKC", header).strip()
    if not text or not text.isascii():
        return None
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    if not text:
        return None
    return text if text[0].isalpha() else f"col_{text}"


def logical_name(header: str, position: int) -> tuple[str, bool]:
    """The logical name of a header and whether it was guessed from the dictionary or made up."""
    key = unicodedata.normalize("NFKC", header).strip()
    if key in HEADER_NAMES:
        return HEADER_NAMES[key], True
    snake = snake_case(header)
    if snake:
        return snake, False
    return f"col_{position}", True


# --- values -----------------------------------------------------------------------------------------


def _is_empty(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def _text(v: Any) -> str:
    if isinstance(v, str):
        return unicodedata.normalize("NFKC", v).strip()
    return str(v)


def _real_date(y: str, m: str, d: str) -> date | None:
    try:
        return date(int(y), int(m), int(d))
    except ValueError:
        return None


def _date_form(text: str, compact: bool) -> tuple[str, date] | None:
    for name, regex in _DATE_FORMS.items():
        m = regex.match(text)
        if m:
            day = _real_date(*m.groups())
            return (name, day) if day else None
    if compact:
        m = _COMPACT_DATE.match(text)
        if m:
            day = _real_date(*m.groups())
            return ("yyyyMMdd", day) if day and 1850 <= day.year <= 2100 else None
    return None


def _share(values: Sequence[Any], test: Callable[[Any], bool]) -> tuple[int, float]:
    hits = sum(1 for v in values if test(v))
    return hits, hits / len(values) if values else 0.0


def _shape_pattern(texts: Sequence[str]) -> str | None:
    """A regex of character-class runs that every value fits (HKZX330100000001 -> ^[A-Z]{4}[0-9]{12}$).

    Only for ASCII codes of letters and digits (with - or _ between runs); the pattern holds classes
    and lengths, never a value's characters.
    """
    def runs(text: str) -> list[tuple[str, int]] | None:
        out: list[tuple[str, int]] = []
        for ch in text:
            if "0" <= ch <= "9":
                cls = "[0-9]"
            elif "A" <= ch <= "Z":
                cls = "[A-Z]"
            elif "a" <= ch <= "z":
                cls = "[a-z]"
            elif ch in "-_":
                cls = re.escape(ch) if ch == "-" else "_"
            else:
                return None
            if out and out[-1][0] == cls:
                out[-1] = (cls, out[-1][1] + 1)
            else:
                out.append((cls, 1))
        return out

    shapes = [runs(t) for t in texts]
    if not shapes or any(s is None for s in shapes):
        return None
    first = [cls for cls, _ in shapes[0]]  # type: ignore[union-attr]
    if any([cls for cls, _ in s] != first for s in shapes):  # type: ignore[union-attr]
        return None
    parts = []
    for i, cls in enumerate(first):
        lengths = [s[i][1] for s in shapes]  # type: ignore[index]
        lo, hi = min(lengths), max(lengths)
        if cls in ("_", r"\-"):
            parts.append(cls if lo == hi == 1 else f"{cls}{{{lo},{hi}}}" if lo != hi else f"{cls}{{{lo}}}")
        else:
            parts.append(f"{cls}{{{lo}}}" if lo == hi else f"{cls}{{{lo},{hi}}}")
    if len(parts) > 8:
        return None
    return "^" + "".join(parts) + "$"


def _round_length(n: int) -> int:
    for bound in (10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if n <= bound // 2 or (bound >= 50 and n <= bound * 0.8):
            return bound
    return max(n * 2, 10000)


def _pii_from_header(physical: str, name: str) -> str | None:
    # an identifier of the agency's own record (罪犯编号, prisoner_id) is not the personal data it points to
    identifier = name == "id" or name.endswith(("_id", "_no")) or any(w in physical for w in ("编号", "流水号"))
    for kind, chinese, english in PII_HEADER_WORDS:
        if identifier and kind != "identity_number":
            continue
        if any(w in physical for w in chinese) or any(w in name for w in english):
            return kind
    return None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --- one column -------------------------------------------------------------------------------------


def analyse_column(position: int, physical: str, values: Sequence[Any], *, today: date | None = None) -> ColumnDraft:
    """Guess one column from its values (which are never kept in the result)."""
    today = today or date.today()
    name, dictionary = logical_name(physical, position)
    col = ColumnDraft(position=position, physical=physical.strip() or f"col_{position}", name=name)
    if not physical.strip():
        col.review.append("the column has no header: name it")
    elif dictionary and name.startswith("col_"):
        col.review.append("logical name made up (header not in the dictionary): name it")
    filled = [v for v in values if not _is_empty(v)]
    col.rows, col.empty = len(values), len(values) - len(filled)
    col.required = bool(values) and not col.empty
    texts = [_text(v) for v in filled]
    col.distinct = len(set(texts))
    header_pii = _pii_from_header(col.physical, name)
    n = len(filled)
    if not n:
        col.review.append("no value in the sample: type, requiredness and classification unknown")
        _classify(col, header_pii, texts, today)
        return col

    def misfit(hits: int, what: str) -> None:
        if hits < n:
            col.review.append(f"{_plural(n - hits, 'value')} of {n:,} are not {what}")

    # typed values (xlsx, JSON)
    if all(isinstance(v, bool) for v in filled):
        col.logical_type = "boolean"
    elif all(isinstance(v, (datetime, date)) for v in filled):
        if all(not isinstance(v, datetime) or v.time() == time(0) for v in filled):
            _as_date(col, [v.date() if isinstance(v, datetime) else v for v in filled], today, typed=True)
        else:
            _as_timestamp(col, texts, typed=True)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in filled) and not (
        header_pii == "identity_number" or all(isinstance(v, int) and len(str(abs(v))) >= 16 for v in filled)
    ):
        col.logical_type = "integer" if all(isinstance(v, int) for v in filled) else "number"
        if any(isinstance(v, float) and v >= 1e15 for v in filled):
            col.review.append("very large numbers: a code or identity number a spreadsheet turned into a number?")
    else:
        _from_text(col, filled, texts, header_pii, today, misfit)
    _classify(col, header_pii, texts, today)
    return col


def _from_text(col: ColumnDraft, filled: Sequence[Any], texts: Sequence[str], header_pii: str | None,
               today: date, misfit: Callable[[int, str], None]) -> None:
    n = len(texts)
    typed_numbers = sum(1 for v in filled if isinstance(v, (int, float)) and not isinstance(v, bool))
    ids, id_share = _share(texts, lambda t: _id_form(t) is not None)
    if id_share >= ID_SHARE or (header_pii == "identity_number" and id_share >= 0.3):
        col.recognised = "identity_number"
        col.options = {"pattern": ID_PATTERN}
        misfit(ids, "valid identity numbers (GB 11643, 18 characters or first-generation 15 digits)")
        if typed_numbers:
            col.review.append(f"{_plural(typed_numbers, 'value')} arrive as numbers: ask the agency to send text "
                              "(a spreadsheet loses an identity number's last digits)")
        return
    if header_pii == "identity_number":
        col.review.append(f"named like identity numbers but only {ids:,} of {n:,} values are valid ones")
    usccs, uscc_share = _share(texts, lambda t: is_valid_uscc(t.upper()))
    if uscc_share >= FORMAT_SHARE:
        col.recognised = "uscc"
        col.options = {"pattern": USCC_PATTERN}
        misfit(usccs, "valid unified social credit codes (GB 32100)")
        return
    phones, phone_share = _share(texts, lambda t: bool(_PHONE.match(t)))
    if phone_share >= FORMAT_SHARE:
        col.recognised = "phone"
        mobiles, _ = _share(texts, lambda t: bool(_MOBILE.match(t)))
        col.options = {"pattern": MOBILE_PATTERN if mobiles == phones else PHONE_PATTERN}
        misfit(phones, "mobile or landline phone numbers")
        return
    stamps, stamp_share = _share(texts, lambda t: bool(_TIMESTAMP.match(t)))
    if stamp_share >= FORMAT_SHARE:
        misfit(stamps, "timestamps")
        _as_timestamp(col, [t for t in texts if _TIMESTAMP.match(t)], typed=False)
        return
    compact = bool(_DATE_HEADER.search(col.physical) or _DATE_HEADER.search(col.name))
    forms = [_date_form(t, compact) for t in texts]
    dated = [f for f in forms if f]
    if len(dated) / n >= FORMAT_SHARE:
        misfit(len(dated), "real calendar dates")
        seen = Counter(name for name, _ in dated)
        other = sorted(f for f in seen if f != "yyyy-MM-dd")
        if other:
            col.review.append("dates also arrive as " + ", ".join(other) + " (the date normalisation step reads them)")
        _as_date(col, [d for _, d in dated], today, typed=False)
        return
    if all(t.lower() in _BOOLEAN for t in texts):
        col.logical_type = "boolean"
        return
    if all(_INTEGER.match(t) for t in texts):
        col.logical_type = "integer"
        return
    if all(_NUMBER.match(t) for t in texts) and not any(t.startswith("0") and len(t) > 1 and t[1] != "." for t in texts):
        col.logical_type = "number"
        return
    col.logical_type = "string"


def _as_date(col: ColumnDraft, days: Sequence[date], today: date, *, typed: bool) -> None:
    col.logical_type = "date"
    col.options = {"format": "yyyy-MM-dd"}
    if days and min(days) >= date(1900, 1, 1):
        col.options["minimum"] = "1900-01-01"
    if typed:
        col.review.append("dates arrive typed (spreadsheet dates): the connector writes them ISO")
    if days and max(days) <= today:
        col.quality.append({
            "name": "not_future", "type": "custom", "engine": "fundx", "dimension": "accuracy", "severity": "error",
            "description": "No date after the night of the check.", "implementation": {"rule": "notFuture"},
        })
        col.review.append("not_future rule added (no date in the sample is in the future): keep it only for past events")


def _as_timestamp(col: ColumnDraft, texts: Sequence[str], *, typed: bool) -> None:
    col.logical_type = "timestamp"
    col.options = {"timezone": True, "defaultTimezone": "Asia/Shanghai"}
    with_zone = sum(1 for t in texts if re.search(r"(Z|[+-]\d{2}:?\d{2})$", t))
    if typed or with_zone < len(texts):
        col.review.append("timestamps without a UTC offset are read as Asia/Shanghai (defaultTimezone): confirm with the agency")
    else:
        col.review.append("timestamps carry their UTC offset")


def _classify(col: ColumnDraft, header_pii: str | None, texts: Sequence[str], today: date) -> None:
    """PII kind, classification, normalisation, enum and quality rules of a typed column."""
    n = len(texts)
    distinct_share = col.distinct / n if n else 0.0
    pii = None
    if col.recognised == "identity_number":
        pii = "identity_number"
    elif col.recognised == "phone":
        pii = "phone"
    elif col.logical_type == "string" and n:
        _people, people_share = _share(texts, lambda t: bool(_PERSON_NAME.match(t)))
        named = col.physical in ("姓名", "名字") or "姓名" in col.physical or "name" in col.name.split("_")
        not_person = any(w in col.physical or w in col.name for w in _NOT_PERSONAL_NAME)
        if named and not not_person and people_share >= 0.5:
            pii = "name"
            col.recognised = "name"
        elif named and not not_person:
            col.review.append("named like a name, but the values do not look like personal names "
                              "(a business's name?): check the classification")
        elif not named and people_share >= FORMAT_SHARE and distinct_share >= 0.5 and n >= 5:
            pii = "name"
            col.recognised = "name"
            col.review.append("values look like Chinese personal names (2-4 characters)")
        if pii is None:
            _addresses, address_share = _share(texts, lambda t: len(t) >= 6 and bool(_ADDRESS.search(t)))
            if header_pii == "address" or (address_share >= FORMAT_SHARE and distinct_share >= 0.5):
                pii = "address"
                col.recognised = "address"
        if pii is None and set(texts) <= {"男", "女"} and (header_pii == "gender" or n >= 5):
            pii = "gender"
    if pii is None and header_pii and not (header_pii == "identity_number" and col.recognised != "identity_number"):
        pii = header_pii
    if pii is None and header_pii == "identity_number":
        pii = "identity_number"  # named so: treat as personal data until a person says otherwise
    if pii:
        col.pii = pii
        col.classification = "restricted"
        col.review.append(f"personal data guessed ({pii}): classified restricted")
    # normalisation and options, as the live contracts declare them
    if col.recognised == "identity_number" or col.pii == "identity_number":
        col.normalise = ["trim", "halfwidth", "upperX"]
        forms = Counter(_id_form(t) for t in texts)
        if forms[15]:
            col.normalise.append("upgrade15")
            col.review.append(f"{_plural(forms[15], 'first-generation 15-digit number')}: upgrade15 added (GB 11643-1999); "
                              "confirm that the agency's register still holds them")
        unknown = sum(1 for t in texts if _id_form(t) and not is_known_area_code(_upgraded(t)[:6]))
        if unknown:
            col.review.append(f"{_plural(unknown, 'number')} with an area code that never existed in GB/T 2260")
        col.options = {"pattern": ID_PATTERN}
        col.logical_type = "string"
        col.quality = [
            {"name": "excel_mangled", "type": "custom", "engine": "fundx", "dimension": "conformity", "severity": "error",
             "description": "The number was turned into a floating-point number by a spreadsheet (1.10105E+17); it cannot be repaired.",
             "implementation": {"rule": "notExcelMangled"}},
            {"name": "valid", "type": "custom", "engine": "fundx", "dimension": "accuracy", "severity": "error",
             "description": "GB 11643: a real birth date and the right MOD 11-2 check character.",
             "implementation": {"rule": "identityNumber"}},
            {"name": "area_code", "type": "custom", "engine": "fundx", "dimension": "accuracy", "severity": "error",
             "description": "GB/T 2260: issued under a county-level code that has existed anywhere in the country, "
                            "retired ones too (a number keeps the code of the place that first issued it).",
             "implementation": {"rule": "knownAreaCode"}},
        ]
    elif col.recognised == "uscc":
        col.normalise = ["trim", "halfwidth"]
        col.quality = [{"name": "valid", "type": "custom", "engine": "fundx", "dimension": "accuracy", "severity": "error",
                        "description": "GB 32100: the right MOD 31 check character.", "implementation": {"rule": "creditCode"}}]
        col.review.append("unified social credit codes recognised (GB 32100)")
    elif col.logical_type == "date":
        col.normalise = ["trim", "halfwidth", "date"]
    elif col.logical_type in ("string", "timestamp"):
        col.normalise = ["trim"]
    if col.recognised == "phone":
        col.normalise = ["trim", "halfwidth"]
        col.review.append("phone numbers recognised")
    if col.logical_type == "string" and n and col.recognised not in ("identity_number", "uscc", "phone"):
        if col.pii == "gender" and set(texts) <= {"男", "女"}:
            col.enum = ["男", "女"]
        elif col.pii == "none":
            shape = _shape_pattern(texts)
            if shape and col.distinct > 1:
                col.options = {"pattern": shape}
                col.recognised = col.recognised or "shape"
                col.review.append("pattern is the shape every value has in the sample (character classes and lengths)")
        if "pattern" not in col.options and col.enum is None:
            longest = max(len(t) for t in texts)
            # personal names as the live contracts bound them; other text: a round bound above the longest
            col.options = {"minLength": 1, "maxLength": 50} if col.pii == "name" and longest <= 40 else {
                "maxLength": _round_length(longest)}
            if col.pii == "none" and 1 < col.distinct <= 10 and n >= 5 * col.distinct:
                col.review.append(f"only {col.distinct} distinct values: an enum?")


def _upgraded(text: str) -> str:
    """An identity number as the contract's normalisation would leave it (a 15-digit one upgraded)."""
    t = normalize_id(text) or ""
    return upgrade_id15(t) if len(t) == 15 and t.isascii() and t.isdigit() else t


def _id_form(text: str) -> int | None:
    """18 for a valid identity number, 15 for a first-generation one that upgrades to a valid one, else None."""
    t = normalize_id(text) or ""
    if is_valid_id(t):
        return 18
    return 15 if len(t) == 15 and is_valid_id(_upgraded(t)) else None


# --- the contract ----------------------------------------------------------------------------------

_FEED = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def check_feed_name(feed: str) -> str:
    """A feed name as the exchange writes them: agency.feed in lower_case_with_underscores."""
    if not _FEED.match(feed):
        raise InferError(f"feed {feed!r}: write it agency.feed in lower_case_with_underscores (police.deaths)",
                         action="pass --feed AGENCY.FEED")
    return feed


def default_feed(sample: Sample) -> str:
    """draft.<sample's name in snake_case> when no --feed is given."""
    stem = Path(urlsplit(sample.source).path if is_url(sample.source) else sample.source).stem
    return f"draft.{snake_case(stem) or 'feed'}".replace("draft.col_", "draft.f_")


def _key_score(col: ColumnDraft) -> int:
    score = 0
    name = col.name
    if name == "id" or name in ("uscc", "code") or name.endswith(("_id", "_no", "_code")):
        score += 3
    if any(w in col.physical for w in _KEY_WORDS):
        score += 2
    if col.recognised in ("shape", "uscc"):
        score += 1
    if col.pii != "none":
        score -= 5
    return score


def _choose_key(columns: list[ColumnDraft], rows: int) -> list[str]:
    candidates = [c for c in columns if rows >= 2 and c.required and c.distinct == rows
                  and c.logical_type in ("string", "integer")]
    notes = []
    if candidates:
        best = max(candidates, key=lambda c: (_key_score(c), -c.position))
        others = [c.name for c in candidates if c is not best]
        best.review.append(f"primary key guessed: unique and non-empty in all {rows:,} rows"
                           + (f"; other candidates: {', '.join(others)}" if others else ""))
    else:
        best = max(columns, key=lambda c: (_key_score(c), c.filled, -c.position))
        best.review.append("primary key guessed, but no column is unique and non-empty in every row of the sample: "
                           "choose the key (primaryKeyPosition for a composite key)")
        notes.append("no unique column in the sample")
    best.primary_key = best.unique = best.required = True
    return notes


def _choose_incremental(columns: list[ColumnDraft]) -> None:
    stamps = [c for c in columns if c.logical_type == "timestamp"]
    hinted = [c for c in stamps if re.search(r"updat|chang|modif|report|settl|_at$|更新|修改|变更", c.name + c.physical)]
    pick = hinted[0] if hinted else (stamps[0] if len(stamps) == 1 else None)
    if pick:
        pick.incremental = True
        pick.review.append("incremental column guessed (the connector pulls rows changed since the last night by it)")


def _property(col: ColumnDraft) -> dict[str, Any]:
    prop: dict[str, Any] = {"name": col.name}
    if col.physical != col.name:
        prop["physicalName"] = col.physical
    prop["logicalType"] = col.logical_type
    if col.options:
        prop["logicalTypeOptions"] = dict(col.options)
    prop["required"] = bool(col.required)
    if col.unique:
        prop["unique"] = True
    if col.primary_key:
        prop["primaryKey"] = True
        prop["primaryKeyPosition"] = 1
    prop["classification"] = col.classification
    if col.enum:
        prop["enum"] = [{"value": v} for v in col.enum]
    custom: list[dict[str, Any]] = [{"property": "pii", "value": col.pii}]
    if col.incremental:
        custom.append({"property": "incremental", "value": True})
    if col.normalise:
        custom.append({"property": "normalise", "value": list(col.normalise)})
    if col.review:
        custom.append({"property": "reviewNeeded", "value": True, "description": "; ".join(col.review) + "."})
    prop["customProperties"] = custom
    if col.quality:
        prop["quality"] = [dict(q) for q in col.quality]
    return prop


def build_document(feed: str, sample: Sample, columns: list[ColumnDraft]) -> tuple[dict[str, Any], list[str]]:
    """The ODCS document of a draft and the contract-level items to review."""
    object_name = feed.replace(".", "_")
    review = ["description.purpose, domain, slaProperties, batchPolicy and the row_count band are placeholders: "
              "agree them with the agency and the stage that uses the feed"]
    obj: dict[str, Any] = {"name": object_name}
    if sample.object_name:
        obj["physicalName"] = sample.object_name
        review.append(f"schema.0.physicalName is the sample's {'sheet' if sample.kind == 'xlsx' else 'name'}: "
                      "write the name the agency delivers (a file pattern such as deaths_YYYYMM.csv, a table, an endpoint)")
    obj["logicalType"] = "object"
    obj["properties"] = [_property(c) for c in columns]
    quality: list[dict[str, Any]] = []
    by_pii = {c.pii: c.name for c in reversed(columns)}
    id_col = by_pii.get("identity_number")
    birth = next((c.name for c in columns if c.pii == "birth_date" and c.logical_type == "date"), None)
    if id_col and birth:
        quality.append({"name": "birth_date_matches_id", "type": "custom", "engine": "fundx", "dimension": "consistency",
                        "severity": "error", "description": "The birth date equals the one written in the identity number.",
                        "implementation": {"rule": "birthDateMatchesId", "column": birth, "idNumber": id_col}})
    death = next((c.name for c in columns if c.logical_type == "date" and "death" in c.name), None)
    if id_col and death:
        quality.append({"name": "death_not_before_birth", "type": "custom", "engine": "fundx", "dimension": "consistency",
                        "severity": "error", "description": "The death date is not before the birth date in the identity number.",
                        "implementation": {"rule": "notBeforeIdBirth", "column": death, "idNumber": id_col}})
    if quality:
        review.append("cross-column rules guessed from the column names: " + ", ".join(q["name"] for q in quality))
    quality.append({"name": "row_count", "type": "custom", "engine": "fundx", "dimension": "completeness",
                    "severity": "error", "description": "A batch's rows are within a factor of the trailing history's median.",
                    "implementation": {"rule": "rowCountVsHistory", "nights": 28, "minNights": 7,
                                       "minRatio": 0.25, "maxRatio": 4.0}})
    obj["quality"] = quality
    incremental = next((c for c in columns if c.incremental), None)
    dated = [c for c in columns if c.logical_type in ("date", "timestamp")]
    event = next((c for c in dated if c.pii == "event_date"), None) or (dated[0] if dated else None)
    sla: list[dict[str, Any]] = [
        {"property": "frequency", "value": 1, "unit": "d", "scheduler": "cron", "schedule": "0 2 * * *",
         "description": "TODO: how often the agency delivers (placeholder: every night at 02:00 Asia/Shanghai)."},
        {"property": "timeOfAvailability", "value": "01:00",
         "description": "TODO: when the agency's data is available (placeholder)."},
        {"property": "latency", "value": 1, "unit": "d",
         **({"element": f"{object_name}.{incremental.name}"} if incremental else {}),
         "description": "TODO: how soon a record reaches the exchange (placeholder)."},
        {"property": "errorRate", "value": 0.02, "driver": "operational",
         "description": "TODO: the share of a batch's rows that may fail the contract (placeholder: 2 %)."},
        {"property": "deliveryDeadline", "value": "06:00", "driver": "operational",
         "description": "TODO: when the batch must be delivered to its stage (placeholder)."},
    ]
    if event:
        sla.append({"property": "eventLatency", "value": 30, "unit": "d", "element": f"{object_name}.{event.name}",
                    "driver": "analytics", "description": "TODO: 90 % of the rows reach their stage within this many days "
                    "of the event (placeholder)."})
    else:
        review.append("slaProperties: no date column for eventLatency (the SLA monitor needs one)")
    document: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"urn:fundx:contract:{feed}",
        "name": feed,
        "version": "0.1.0",
        "status": "draft",
        "description": {"purpose": f"TODO: what {feed} is for and which stage uses it."},
        "customProperties": [
            {"property": "batchPolicy", "value": {"rejectOnSchemaBreak": True, "rejectAboveFailedPercent": 10,
                                                  "minFailedRows": 5}},
            {"property": "reviewNeeded", "value": True, "description": "; ".join(review) + "."},
        ],
        "schema": [obj],
        "slaProperties": sla,
    }
    return document, review


def infer_contract(sample: Sample, feed: str | None = None, *, today: date | None = None) -> Draft:
    """A draft contract for ``feed`` from a sample (see the module's docstring)."""
    feed = check_feed_name(feed) if feed else default_feed(sample)
    if not sample.headers:
        raise InferError(f"{sample.source}: no columns")
    headers = [str(h) if h is not None else "" for h in sample.headers]
    stripped = [unicodedata.normalize("NFKC", h).strip() for h in headers]
    seen: dict[str, int] = {}
    for i, h in enumerate(stripped, 1):
        if h and h in seen:
            raise InferError(f"{sample.source}: columns {seen[h]} and {i} have the same header {h!r}")
        seen.setdefault(h, i)
    columns = []
    for i, header in enumerate(headers):
        values = [row[i] if i < len(row) else None for row in sample.rows]
        columns.append(analyse_column(i + 1, header.strip(), values, today=today))
    names: Counter[str] = Counter()
    for col in columns:  # two headers the dictionary maps to one name (地址, 住址): number them
        names[col.name] += 1
        if names[col.name] > 1:
            col.name = f"{col.name}_{names[col.name]}"
            col.review.append("logical name numbered: another column has the same guessed name")
    _choose_key(columns, len(sample.rows))
    _choose_incremental(columns)
    document, review = build_document(feed, sample, columns)
    draft = Draft(feed, sample, columns, document, review, "")
    draft.text = render(draft)
    return draft


# --- YAML in the style of the live contracts ----------------------------------------------------------


def _flow(value: Any) -> str:
    """One value in YAML flow style on one line (e.g. ``{property: pii, value: none}``)."""
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 30, sort_keys=False)
    return text.strip()[1:-1]


_FLOW_KEYS = {"logicalTypeOptions", "enum", "value", "implementation", "purpose"}


def _block(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, dict) and key not in _FLOW_KEYS:
            lines.append(f"{pad}{key}:")
            _block(item, indent + 2, lines)
        elif isinstance(item, list) and item and all(isinstance(x, dict) for x in item) and key in ("schema", "properties"):
            lines.append(f"{pad}{key}:")
            for element in item:
                inner: list[str] = []
                _block(element, indent + 4, inner)
                inner[0] = f"{pad}  - " + inner[0].lstrip()
                lines.extend(inner)
        elif isinstance(item, list) and item and all(isinstance(x, dict) for x in item) and (
                key in ("quality", "slaProperties") or any("description" in x for x in item)):
            lines.append(f"{pad}{key}:")
            lines.extend(f"{pad}  - {_flow(x)}" for x in item)
        else:
            lines.append(f"{pad}{key}: {_flow(item)}")


def render(draft: Draft) -> str:
    """The draft as YAML: a comment listing what to review, then the contract in the live contracts' style."""
    s = draft.sample
    rows = f"{len(s.rows):,} rows{' (the first; the sample has more)' if s.truncated else ''}"
    read = f", read as {s.encoding.upper().replace('-SIG', ' with BOM')}" if s.encoding else ""
    head = [
        f"# DRAFT data contract for {draft.feed}, inferred by `fundx contract infer` from {s.source}",
        f"# ({s.kind}{read}; {rows}, {len(draft.columns)} columns). Nothing here is confirmed yet.",
        "# fundx vocabulary: see civil_affairs.deaths.odcs.yaml and contracts/rules.py.",
        "#",
        "# REVIEW before it goes live (each item is marked reviewNeeded: true below; remove the marks when done):",
    ]
    for note in draft.review:
        head.append(f"#   - contract: {note}")
    for c in draft.columns:
        if c.review:
            label = c.name if c.physical == c.name else f"{c.name} ({c.physical})"
            head.append(f"#   - {label}: {c.logical_type}, {c.classification}, pii {c.pii}: " + "; ".join(c.review))
    head += [
        "#   - every column: required was guessed from the sample (no empty value in it); check it",
        "# Then set version 1.0.0 and status active, and release it: fundx contract release " + draft.feed,
    ]
    lines: list[str] = []
    _block(draft.document, 0, lines)
    text = "\n".join(head + lines) + "\n"
    if yaml.safe_load(text) != draft.document:  # pragma: no cover - the emitter is a pure function of the document
        raise AssertionError("the rendered YAML does not read back as the drafted document")
    return text


def summary_rows(draft: Draft) -> Iterable[dict[str, Any]]:
    """One row per column for people: names, type, counts and guesses, never a value."""
    for c in draft.columns:
        yield {
            "position": c.position, "header": c.physical, "name": c.name, "logicalType": c.logical_type,
            "required": c.required, "primaryKey": c.primary_key, "rows": c.rows, "empty": c.empty,
            "distinct": c.distinct, "recognised": c.recognised, "classification": c.classification, "pii": c.pii,
            "review": list(c.review),
        }
