"""One column of a sample: its logical name, its type and format, and whether it holds personal data.

:func:`analyse_column` guesses from the header and the values (which it never keeps): the logical
name (:data:`HEADER_NAMES`, else the header in snake_case), the logicalType and ``required``, the
formats of :mod:`contracts.infer.values`, the personal data of a kind (``pii``, classified
``restricted``), and the normalisation, options and quality rules the live contracts declare for
such a column. Every guess a person must confirm is a note in the column's ``review``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from contracts.infer.values import (
    FORMAT_SHARE,
    ID_PATTERN,
    ID_SHARE,
    MOBILE_PATTERN,
    PHONE_PATTERN,
    USCC_PATTERN,
    as_text,
    date_form,
    id_form,
    is_empty,
    plural,
    round_length,
    shape_pattern,
    share,
    upgraded,
)
from fundx.core.areacodes import is_known_area_code
from fundx.core.creditcodes import is_valid_uscc

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

# --- recognisers (each looks at one stripped text value) -------------------------------------------

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
_DATE_HEADER = re.compile(r"日期|时间|日$|date|_on$|_at$|time|day", re.I)


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


def pii_from_header(physical: str, name: str) -> str | None:
    """The kind of personal data a header names (:data:`PII_HEADER_WORDS`), or None."""
    # an identifier of the agency's own record (罪犯编号, prisoner_id) is not the personal data it points to
    identifier = name == "id" or name.endswith(("_id", "_no")) or any(w in physical for w in ("编号", "流水号"))
    for kind, chinese, english in PII_HEADER_WORDS:
        if identifier and kind != "identity_number":
            continue
        if any(w in physical for w in chinese) or any(w in name for w in english):
            return kind
    return None


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
    filled = [v for v in values if not is_empty(v)]
    col.rows, col.empty = len(values), len(values) - len(filled)
    col.required = bool(values) and not col.empty
    texts = [as_text(v) for v in filled]
    col.distinct = len(set(texts))
    header_pii = pii_from_header(col.physical, name)
    n = len(filled)
    if not n:
        col.review.append("no value in the sample: type, requiredness and classification unknown")
        _classify(col, header_pii, texts, today)
        return col

    def misfit(hits: int, what: str) -> None:
        if hits < n:
            col.review.append(f"{plural(n - hits, 'value')} of {n:,} are not {what}")

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
    ids, id_share = share(texts, lambda t: id_form(t) is not None)
    if id_share >= ID_SHARE or (header_pii == "identity_number" and id_share >= 0.3):
        col.recognised = "identity_number"
        col.options = {"pattern": ID_PATTERN}
        misfit(ids, "valid identity numbers (GB 11643, 18 characters or first-generation 15 digits)")
        if typed_numbers:
            col.review.append(f"{plural(typed_numbers, 'value')} arrive as numbers: ask the agency to send text "
                              "(a spreadsheet loses an identity number's last digits)")
        return
    if header_pii == "identity_number":
        col.review.append(f"named like identity numbers but only {ids:,} of {n:,} values are valid ones")
    usccs, uscc_share = share(texts, lambda t: is_valid_uscc(t.upper()))
    if uscc_share >= FORMAT_SHARE:
        col.recognised = "uscc"
        col.options = {"pattern": USCC_PATTERN}
        misfit(usccs, "valid unified social credit codes (GB 32100)")
        return
    phones, phone_share = share(texts, lambda t: bool(_PHONE.match(t)))
    if phone_share >= FORMAT_SHARE:
        col.recognised = "phone"
        mobiles, _ = share(texts, lambda t: bool(_MOBILE.match(t)))
        col.options = {"pattern": MOBILE_PATTERN if mobiles == phones else PHONE_PATTERN}
        misfit(phones, "mobile or landline phone numbers")
        return
    stamps, stamp_share = share(texts, lambda t: bool(_TIMESTAMP.match(t)))
    if stamp_share >= FORMAT_SHARE:
        misfit(stamps, "timestamps")
        _as_timestamp(col, [t for t in texts if _TIMESTAMP.match(t)], typed=False)
        return
    compact = bool(_DATE_HEADER.search(col.physical) or _DATE_HEADER.search(col.name))
    forms = [date_form(t, compact) for t in texts]
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
        _people, people_share = share(texts, lambda t: bool(_PERSON_NAME.match(t)))
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
            _addresses, address_share = share(texts, lambda t: len(t) >= 6 and bool(_ADDRESS.search(t)))
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
        forms = Counter(id_form(t) for t in texts)
        if forms[15]:
            col.normalise.append("upgrade15")
            col.review.append(f"{plural(forms[15], 'first-generation 15-digit number')}: upgrade15 added (GB 11643-1999); "
                              "confirm that the agency's register still holds them")
        unknown = sum(1 for t in texts if id_form(t) and not is_known_area_code(upgraded(t)[:6]))
        if unknown:
            col.review.append(f"{plural(unknown, 'number')} with an area code that never existed in GB/T 2260")
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
            shape = shape_pattern(texts)
            if shape and col.distinct > 1:
                col.options = {"pattern": shape}
                col.recognised = col.recognised or "shape"
                col.review.append("pattern is the shape every value has in the sample (character classes and lengths)")
        if "pattern" not in col.options and col.enum is None:
            longest = max(len(t) for t in texts)
            # personal names as the live contracts bound them; other text: a round bound above the longest
            col.options = {"minLength": 1, "maxLength": 50} if col.pii == "name" and longest <= 40 else {
                "maxLength": round_length(longest)}
            if col.pii == "none" and 1 < col.distinct <= 10 and n >= 5 * col.distinct:
                col.review.append(f"only {col.distinct} distinct values: an enum?")
