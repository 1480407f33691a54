"""What the generator knows of each feed's contract: enough to plant mistakes and name the rules they break.

tests/contracts/test_contract_city.py holds this knowledge against the contracts' validator: every
row rule a planted row breaks is named, and every rule no planted row breaks is in NOT_PLANTED with
the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.city.feeds import HOSPITAL_DEATHS, WAGE_INCOME

_KEY_MISSING = ("a row without its key cannot be named, paged (market keyset) or deduplicated: the "
                "connectors keep one row per key (connectors/base.py deduplicate), so keyless rows collapse")
_KEY_REPEATED = ("the connectors keep one row per key before the contract sees a batch (replayed pages, "
                 "justice's overlapping snapshots; connectors/base.py deduplicate), so a repeated key "
                 "never reaches the check")
_INCREMENTAL = ("the agency windows and pages by this column (the REST index parses it, the database "
                "view filters on it): a row without a readable value is never served")
_COMPARED = ("the sandbox's database tests (tests/sandbox/test_agencies.py _bills_equal) compare bill ids and "
             "totals with ==, which a missing value never passes; the database carries NULL, so plant it "
             "once that comparison treats missing values as equal")
_TYPED_DATE = ("the settlement database types the column (date; the generated frame holds date "
               "objects): a value that is not a date cannot be stored")
#: Row rules no planted row breaks, per feed, and why (every other row rule is planted).
NOT_PLANTED: dict[str, dict[str, str]] = {
    "civil_affairs.deaths": {
        "record_id.required": _KEY_MISSING, "record_id.unique": _KEY_REPEATED,
        "reported_at.required": _INCREMENTAL, "reported_at.timestamp": _INCREMENTAL,
    },
    "religious_affairs.deaths": {
        "record_id.required": _KEY_MISSING, "record_id.unique": _KEY_REPEATED,
    },
    "police.deaths": {
        "cancellation_id.required": _KEY_MISSING, "cancellation_id.unique": _KEY_REPEATED,
        "updated_at.required": _INCREMENTAL, "updated_at.timestamp": _INCREMENTAL,
    },
    "justice.prisoners": {
        "prisoner_id.required": _KEY_MISSING, "prisoner_id.unique": _KEY_REPEATED,
    },
    "medical_insurance.bills": {
        "bill_id.required": _KEY_MISSING,
        "bill_id.unique": _KEY_REPEATED + "; setl_id is also the table's PRIMARY KEY",
        "settled_at.required": _INCREMENTAL, "settled_at.timestamp": _INCREMENTAL,
        "admitted_on.date": _TYPED_DATE, "discharged_on.date": _TYPED_DATE,
        "id_number.required": _COMPARED, "total_amount.required": _COMPARED,
    },
    "market_regulation.businesses": {
        "uscc.required": _KEY_MISSING, "uscc.unique": _KEY_REPEATED,
        "changed_at.required": _INCREMENTAL, "changed_at.timestamp": _INCREMENTAL,
    },
    HOSPITAL_DEATHS: {
        "notice_id.required": _KEY_MISSING, "notice_id.unique": _KEY_REPEATED,
        "notified_at.required": _INCREMENTAL, "notified_at.timestamp": _INCREMENTAL,
    },
    WAGE_INCOME: {
        "declaration_id.required": _KEY_MISSING,
        "declaration_id.unique": _KEY_REPEATED + "; sbxh is also the table's PRIMARY KEY",
        "declared_at.required": _INCREMENTAL, "declared_at.timestamp": _INCREMENTAL,
    },
}


@dataclass(frozen=True)
class FeedSpec:
    """What the generator knows of a feed's contract: enough to plant mistakes and name the rules they break."""

    key: str
    key_digits: int  # digits after the key's prefix; 0: a credit code (its own kinds)
    id_col: str
    required: tuple[str, ...]  # required columns besides key, identity number and incremental column
    lengths: dict[str, tuple[int, str]]  # column -> (maximum length, the note an over-long value carries)
    dates: dict[str, tuple[str, bool]]  # date column -> (earliest day allowed, not after as_of)
    orders: tuple[tuple[str, str, str], ...] = ()  # (earlier column, later column, rule)
    swaps: tuple[tuple[str, str], ...] = ()  # date pairs a clerk swaps
    id_birth: tuple[tuple[str, str], ...] = ()  # (date column, rule): not before the id's birth date
    birth_match: tuple[tuple[str, str], ...] = ()  # (date column, rule): equals the id's birth date
    before_birth: str | None = None  # the death date a century typo can put before the birth
    enums: dict[str, str] = field(default_factory=dict)  # column -> a value outside its enumeration
    guard: dict[str, str] = field(default_factory=dict)  # column -> a value whose rows keep it (others depend on it)
    codes: tuple[str, ...] = ()  # coded columns (a pattern) a clerk mistypes
    ordered_by: str | None = None  # text incremental column: rows tied on it keep their keys' order
    typed: bool = False  # dates as date objects and amounts as numbers (the database feeds)
    amounts: tuple[str, str, str] = ("total_amount", "fund_amount", "fund_share_within_total")  # typed: (total,
    # the share of it that may not exceed it, the rule that says so)
    usccs: tuple[str, ...] = ()  # credit-code columns besides the key (a check character or the last one wrong)
    months: tuple[str, ...] = ()  # YYYY-MM columns a clerk writes without the hyphen
    past_years: int = 1000  # how far back a year typo goes (2026 -> 1026; typed dates 2026 -> 1926)
    left_out: tuple[tuple[str, str], ...] = ()  # (kind, column) not planted in this feed (see NOT_PLANTED)
    upgrade15: bool = False  # the contract upgrades 15-digit numbers (a 15-digit number is no mistake here)


_PERSON_NOTE = "家属代为申报，身份证件遗失，姓名以户籍登记为准；"
_PLACE_NOTE = "地址：杭州市西湖区文三路一百号附三号，联系电话：0571-88888888，工作时间周一至周五；"
_FIRM_NOTE = "经营范围：技术开发、技术服务、技术咨询、成果转让、软件销售、信息系统集成服务；"
_NAME = (50, _PERSON_NOTE)
_PLACE = (100, _PLACE_NOTE)
SPECS: dict[str, FeedSpec] = {
    "civil_affairs.deaths": FeedSpec(
        key="record_id", key_digits=10, id_col="id_number", ordered_by="reported_at", upgrade15=True,
        required=("name", "death_date"),
        lengths={"name": _NAME, "funeral_home": _PLACE},
        enums={"gender": "未知"},
        dates={"death_date": ("1900-01-01", True), "cremation_date": ("1900-01-01", True)},
        orders=(("death_date", "cremation_date", "cremation_not_before_death"),),
        swaps=(("death_date", "cremation_date"),),
        id_birth=(("death_date", "death_not_before_birth"),),
        before_birth="death_date",
    ),
    "religious_affairs.deaths": FeedSpec(
        key="record_id", key_digits=10, id_col="id_number", upgrade15=True,
        required=("name", "death_date", "registered_on"),
        lengths={"name": _NAME, "venue": _PLACE},
        enums={"gender": "未知"},
        dates={"death_date": ("1900-01-01", True), "registered_on": ("1900-01-01", True)},
        orders=(("death_date", "registered_on", "registration_not_before_death"),),
        swaps=(("death_date", "registered_on"),),
        id_birth=(("death_date", "death_not_before_birth"),),
        before_birth="death_date",
    ),
    "police.deaths": FeedSpec(
        key="cancellation_id", key_digits=10, id_col="id_number", ordered_by="updated_at",
        required=("name", "birth_date", "death_date", "cancelled_on"),
        lengths={"name": _NAME, "police_station": _PLACE},
        enums={"gender": "未知"},
        dates={"birth_date": ("1850-01-01", False), "death_date": ("1900-01-01", True),
               "cancelled_on": ("1900-01-01", True)},
        orders=(("birth_date", "death_date", "death_not_before_birth"),
                ("death_date", "cancelled_on", "cancellation_not_before_death")),
        swaps=(("death_date", "cancelled_on"),),
        birth_match=(("birth_date", "birth_date_matches_id"),),
        before_birth="death_date",
    ),
    "justice.prisoners": FeedSpec(
        key="prisoner_id", key_digits=10, id_col="id_number",
        required=("name", "admitted_on", "sentence_start", "sentence_end", "custody_status"),
        lengths={"name": _NAME, "prison": _PLACE},
        enums={"custody_status": "监外执行"},
        dates={"admitted_on": ("1950-01-01", True), "sentence_start": ("1950-01-01", True),
               "sentence_end": ("1950-01-01", False)},
        orders=(("sentence_start", "sentence_end", "sentence_end_not_before_start"),),
        swaps=(("sentence_start", "sentence_end"),),
    ),
    "medical_insurance.bills": FeedSpec(
        key="bill_id", key_digits=12, id_col="id_number",
        required=("patient_name", "hospital_code", "diagnosis_code", "admitted_on", "total_amount", "fund_amount"),
        lengths={"patient_name": _NAME},
        codes=("hospital_code", "diagnosis_code"),
        dates={"admitted_on": ("2000-01-01", True), "discharged_on": ("2000-01-01", True)},
        orders=(("admitted_on", "discharged_on", "discharge_not_before_admission"),),
        swaps=(("admitted_on", "discharged_on"),),
        typed=True, past_years=100,
        left_out=(("id_missing", "id_number"), ("missing", "total_amount")),
    ),
    "market_regulation.businesses": FeedSpec(
        key="uscc", key_digits=0, id_col="legal_rep_id_number",
        required=("name", "legal_rep_name", "status", "established_on"),
        lengths={"name": (200, _FIRM_NOTE), "legal_rep_name": _NAME},
        enums={"status": "迁出"},
        guard={"status": "注销"},  # a deregistered business keeps its status: its deregistration date depends on it
        dates={"established_on": ("1949-10-01", True), "deregistered_on": ("1949-10-01", True)},
        orders=(("established_on", "deregistered_on", "deregistration_not_before_establishment"),),
        swaps=(("established_on", "deregistered_on"),),
    ),
    HOSPITAL_DEATHS: FeedSpec(
        key="notice_id", key_digits=10, id_col="id_number", ordered_by="notified_at",
        required=("name", "death_date", "certified_on", "hospital_code", "cause_code"),
        lengths={"name": _NAME},
        enums={"gender": "未知"},
        codes=("hospital_code", "cause_code"),
        dates={"death_date": ("1900-01-01", True), "certified_on": ("1900-01-01", True)},
        orders=(("death_date", "certified_on", "certificate_not_before_death"),),
        swaps=(("death_date", "certified_on"),),
        id_birth=(("death_date", "death_not_before_birth"),),
        before_birth="death_date",
    ),
    WAGE_INCOME: FeedSpec(
        key="declaration_id", key_digits=12, id_col="id_number", ordered_by="declared_at",
        required=("name", "employer_uscc", "income_month", "wage_amount", "tax_amount"),
        lengths={"name": _NAME},
        dates={},
        usccs=("employer_uscc",),
        months=("income_month",),
        typed=True, amounts=("wage_amount", "tax_amount", "tax_within_wage"),
    ),
}
