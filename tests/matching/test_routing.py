"""Routing to the office that pays (issue 20, part 3): a person's order goes to the district of their paying
roll entry, a bill's and a hospital's to the hospital's district, an employer's to its registration district,
never to the district in an identity number when those say otherwise (docs/matching.md, "Routing").

Every suspect here is planted with a look-alike district: a number issued under a retired code (330103 下城区,
now 拱墅区) or in another province, a person who moved, a hospital in another district than the patient's
office, an employer registered in another district than its people's numbers say."""

from __future__ import annotations

import json
import os
from datetime import date, datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from fundx.core.creditcodes import uscc_check_char
from matching import orders as mo
from matching import rules
from matching.sql import ROUTINGS, month_no

NIGHT = date(2026, 11, 23)
EARLY, LATE = datetime(2026, 10, 2, 1), datetime(2026, 11, 2, 1)  # two nights' batches of the roll
DEATH = date(2026, 6, 15)


def who(n: int) -> bytes:
    return n.to_bytes(16, "big")


def hexed(n: int) -> str:
    return who(n).hex().upper()


def masked(area: str) -> str:
    return f"{area}********001X"


def uscc(area: str, body: str) -> str:
    first17 = f"91{area}{body}"
    return first17 + uscc_check_char(first17)


def m(text: str) -> int:
    return month_no(date.fromisoformat(text + "-01"))


# The people: (number's area, paying district in the roll or None: not in the roll)
BORN_UNDER_RETIRED_CODE = 1   # number 330103 下城区 (now 拱墅区), paid by 西湖区
BORN_IN_HENAN = 2             # number 410102 郑州中原区, paid by 余杭区: never 外地
MOVED_SAME_ENTRY = 3          # entry sent again: 上城区 then 萧山区
MOVED_NEW_ENTRY = 4           # old entry stopped in 拱墅区, a new active one in 滨江区
NOT_IN_ROLL_HENAN = 5         # not in the roll: the number's area, 外地 410102
NOT_IN_ROLL_RETIRED = 6       # not in the roll, number 330103: 拱墅区
PATIENT = 7                   # number 330106 西湖区, paid by 余杭区, billed by a hospital of 上城区
TWICE = 8                     # two active entries: 富阳区 paid through later than 临安区
HOLDER, OTHER = 9, 10         # one account: the holder's entry in 临平区; numbers of 西湖区 and 北京
PRISONER = 11                 # number 330104 江干区 (now 上城区), paid by 淳安县
WORKER = 12                   # number 330106, paid by 上城区, contributing for employers of 萧山区 and 钱塘区
LEGAL_REP = 13                # not in the roll; number 330106 (the legal representative's district)
NO_DISTRICT = 14              # in the roll, but its entry names no paying district: routed by the number
PRISONER_WORKING = 15         # in custody, not in the roll, number 410102: insured by an employer of 钱塘区
PAID_ELSEWHERE = 16           # paid into another account than the roll's (建德市); with OTHER (北京's number)

ENDED = uscc("330109", "MA2B00001")           # registered in 萧山区, deregistered; its people are of 西湖区
CITY_LEVEL = uscc("330100", "MA2B00004")      # registered by the city's bureau (杭州市本级), deregistered
NO_WAGE = uscc("330114", "MA2B00002")         # registered in 钱塘区: pays for WORKER with no wage declared
NO_WAGE_LESS = uscc("330102", "MA2B00003")    # 上城区: fewer such months for WORKER
COSTLY = "H33010800001"                       # a hospital of 滨江区, costly for its diagnosis
PEERS = ("H33010600001", "H33010600002", "H33010200001")


def entry(key: str, person: int, number_area: str, paying: str, *, status: str = "active", start: str = "2020-01",
          through: str = "2026-10", scheme: str = "basic_pension", account: bytes | None = None,
          at: datetime = LATE, given: bool = True) -> dict:
    return {"district_given": given, "record_key": key, "person": who(person), "id_masked": masked(number_area), "area": paying,
            "spouse": None, "benefit_type": scheme, "monthly_amount": 1000.0, "account": account or who(1000 + person),
            "account_masked": "6222********0001", "status": status, "start_month": m(start), "stop_month": None,
            "paid_through": m(through), "received_at": at}


def paid(entry_key: str, person: int, number_area: str, months: list[str], *, scheme: str = "basic_pension",
         account: bytes | None = None) -> list[dict]:
    # the ledger knows no paying district: its area is the number's (load.feed_sql)
    return [{"record_key": f"PM{entry_key}{mo_}", "entry_key": entry_key, "person": who(person),
             "id_masked": masked(number_area), "area": number_area, "benefit_type": scheme, "month": m(mo_),
             "amount": 1000.0, "account": account or who(1000 + person), "account_masked": "6222********0001",
             "paid_on": date.fromisoformat(mo_ + "-10"), "received_at": LATE} for mo_ in months]


def death(person: int, number_area: str) -> dict:
    return {"feed": "police.deaths", "record_key": f"GA{person}", "person": who(person),
            "id_masked": masked(number_area), "area": number_area, "death_date": DEATH, "received_at": LATE,
            "name_token": None}


def bill(key: str, person: int, number_area: str, hospital: str, total: float, admitted: date = date(2026, 8, 1),
         diagnosis: str = "I10") -> dict:
    return {"record_key": key, "person": who(person), "id_masked": masked(number_area), "area": number_area,
            "hospital_code": hospital, "diagnosis_code": diagnosis, "inpatient": False, "admitted_on": admitted,
            "discharged_on": None, "total_amount": total, "fund_amount": total * 0.7, "received_at": LATE}


def store(*, reverse: bool = False, before_the_move: bool = False) -> dict[str, list[dict]]:
    after = ["2026-07", "2026-08"]
    roll = [
        entry("RE01", BORN_UNDER_RETIRED_CODE, "330103", "330106"),
        entry("RE02", BORN_IN_HENAN, "410102", "330110"),
        entry("RE03", MOVED_SAME_ENTRY, "330106", "330102", at=EARLY),
        entry("RE03", MOVED_SAME_ENTRY, "330106", "330109", at=LATE),    # the office moved the entry
        entry("RE04", MOVED_NEW_ENTRY, "330106", "330105", status="stopped", through="2026-05"),
        entry("RE05", MOVED_NEW_ENTRY, "330106", "330108", start="2026-06"),
        entry("RE07", PATIENT, "330106", "330110"),
        entry("RE08", TWICE, "410102", "330111", through="2026-10"),
        entry("RE09", TWICE, "410102", "330112", through="2026-09", scheme="unemployment"),
        entry("RE10", HOLDER, "330106", "330113", account=b"ACCOUNT-SHARED-01"),
        entry("RE11", PRISONER, "330104", "330127"),
        entry("RE12", WORKER, "330106", "330102"),
        entry("RE14", NO_DISTRICT, "330103", "330103", given=False),  # load.feed_sql: the number's area
        entry("RE16", PAID_ELSEWHERE, "330106", "330182"),
    ]
    payments = [
        *paid("RE01", BORN_UNDER_RETIRED_CODE, "330103", after),
        *paid("RE02", BORN_IN_HENAN, "410102", after),
        *paid("RE03", MOVED_SAME_ENTRY, "330106", after),
        *paid("RE05", MOVED_NEW_ENTRY, "330106", after),
        *paid("RE08", TWICE, "410102", ["2026-05", "2026-06"]),
        *paid("RE09", TWICE, "410102", ["2026-05", "2026-06"], scheme="unemployment"),
        *paid("RE10", HOLDER, "330106", ["2026-05"], account=b"ACCOUNT-SHARED-01"),
        *paid("RE99", OTHER, "110105", ["2026-05"], account=b"ACCOUNT-SHARED-01"),  # an entry the roll no longer has
        *paid("RE11", PRISONER, "330104", ["2026-05", "2026-06"]),
        *paid("RE14", NO_DISTRICT, "330103", after),
        *paid("RE16", PAID_ELSEWHERE, "330106", ["2026-05"], account=b"ACCOUNT-SHARED-02"),  # no roll entry pays it
        *paid("RE98", OTHER, "110105", ["2026-05"], account=b"ACCOUNT-SHARED-02"),
    ]
    deaths = [death(p, a) for p, a in ((BORN_UNDER_RETIRED_CODE, "330103"), (BORN_IN_HENAN, "410102"),
                                       (MOVED_SAME_ENTRY, "330106"), (MOVED_NEW_ENTRY, "330106"),
                                       (NOT_IN_ROLL_HENAN, "410102"), (NOT_IN_ROLL_RETIRED, "330103"),
                                       (PATIENT, "330106"), (NO_DISTRICT, "330103"))]
    custody = [{"record_key": f"ZF{p}", "person": who(p), "id_masked": masked(a), "area": a,
                "custody_status": "在押", "admitted_on": date(2026, 3, 2), "sentence_start": date(2026, 3, 2),
                "sentence_end": date(2029, 3, 1), "received_at": LATE}
               for p, a in ((PRISONER, "330104"), (PRISONER_WORKING, "410102"))]
    bills = [
        bill("YB-D5", NOT_IN_ROLL_HENAN, "410102", PEERS[0], 100.0),       # after death: not in the roll
        bill("YB-D6", NOT_IN_ROLL_RETIRED, "330103", PEERS[0], 100.0),
        bill("YB-D7", PATIENT, "330106", PEERS[2], 300.0),                  # after death, and over the mean
        *(bill(f"YB-P{k}", 100 + k, "330106", PEERS[k % 3], 100.0) for k in range(6)),
        *(bill(f"YB-C{k}", 200 + k, "330106", COSTLY, 200.0, diagnosis="J18.9") for k in range(3)),
        *(bill(f"YB-Q{k}", 300 + k, "330106", PEERS[k % 2], 100.0, diagnosis="J18.9") for k in range(4)),
    ]
    businesses = [{"record_key": ENDED, "area": "330109", "status": "注销", "deregistered_on": date(2026, 3, 31),
                   "changed_on": date(2026, 3, 31), "received_at": LATE}]
    businesses.append({**businesses[0], "record_key": CITY_LEVEL, "area": "330100"})
    subsidies = [{"record_key": f"BT{k}", "uscc": u, "subsidy_type": "稳岗返还", "month": m("2026-06"), "amount": 500.0,
                  "received_at": LATE} for k, u in enumerate((ENDED, CITY_LEVEL))]

    def contribution(key: str, person: int, employer: str, month: str, area: str = "330106") -> dict:
        return {"record_key": key, "person": who(person), "id_masked": masked(area), "area": area,
                "employer_uscc": employer, "month": m(month), "amount": 300.0, "received_at": LATE}

    contributions = [
        contribution("JF-E", LEGAL_REP, ENDED, "2026-06"),
        *(contribution(f"JF-W{k}", WORKER, NO_WAGE, f"2026-0{k}") for k in range(1, 7)),
        *(contribution(f"JF-L{k}", WORKER, NO_WAGE_LESS, f"2026-0{k}") for k in range(1, 4)),
        contribution("JF-P1", PRISONER, NO_WAGE_LESS, "2026-05", "330104"),       # the roll pays him: 淳安县
        *(contribution(f"JF-Q{k}", PRISONER_WORKING, e, f"2026-0{k}", "410102")   # most months for 钱塘区's
          for k, e in ((4, NO_WAGE_LESS), (5, NO_WAGE), (6, NO_WAGE))),
    ]
    wages = [{"record_key": "GS1", "person": who(LEGAL_REP), "id_masked": masked("330106"), "area": "330106",
              "employer_uscc": ENDED, "month": m("2026-09"), "wage_amount": 5000.0, "received_at": LATE}]
    if before_the_move:  # the first night: the office had not sent MOVED_SAME_ENTRY's entry again yet
        roll = [e for e in roll if not (e["record_key"] == "RE03" and e["received_at"] == LATE)]
    out = {"roll": roll, "payments": payments, "deaths": deaths, "custody": custody, "bills": bills,
           "businesses": businesses, "subsidies": subsidies, "contributions": contributions, "wages": wages}
    return {k: list(reversed(v)) for k, v in out.items()} if reverse else out


PARAMS = {"bill_over_mean.min_peers": "3", "hospital_over_mean.min_peers": "3", "hospital_over_mean.min_bills": "3",
          "contributions_without_wage.filing_months": "0"}


def run(reverse: bool = False, before_the_move: bool = False) -> list[dict]:
    con = duckdb.connect()
    params = rules.parse_params(PARAMS)
    schema = {name: ", ".join(c.strip() for c in cols.split(",")) for name, cols in rules.EMPTY.items()}
    tables = {}
    for name, rows in store(reverse=reverse, before_the_move=before_the_move).items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE t ({schema[name]})")
        frame = pa.Table.from_pylist(rows)
        con.register("rows_in", frame)
        con.execute("INSERT INTO t BY NAME SELECT * FROM rows_in")
        tables[name] = con.sql("SELECT * FROM t").to_arrow_table()
        con.unregister("rows_in")
    rules.prepare(con, rules.Inputs(tables), params)
    return rules.run_rules(con, params, NIGHT).to_pylist()


def frame(found: dict | list) -> pd.DataFrame:
    rows = found.values() if isinstance(found, dict) else found
    return pd.DataFrame([{c: r[c] for c in mo.COLUMNS} for r in rows], columns=list(mo.COLUMNS))


@pytest.fixture(scope="module")
def found() -> dict[tuple[str, str], dict]:
    return {(r["rule"], r["subject"]): r for r in run()}


def routed(found: dict, rule: str, subject: str) -> tuple[str, str]:
    row = found[(rule, subject)]
    return row["area"], json.loads(row["detail"])["routed_by"]


def test_every_rule_says_how_its_orders_are_routed():
    assert {r.routing for r in rules.RULES.values()} <= set(ROUTINGS)
    by = {name: r.routing for name, r in rules.RULES.items()}
    assert by["bill_over_mean"] == "bill" and by["hospital_over_mean"] == "hospital"
    assert {by[r] for r in ("deregistered_subsidised", "deregistered_contributing",
                            "contributions_without_wage")} == {"employer"}
    assert by["shared_account"] == "account"
    assert by["contributions_in_custody"] == "insured"
    person_level = ("paid_after_death", "paid_in_custody", "retired_in_custody",
                    "duplicate_receipt", "unemployed_contributing", "frequent_visits", "bill_after_death",
                    "bill_in_custody", "overlapping_stays")
    assert {by[r] for r in person_level} == {"person"} and len(by) == 16


def test_a_persons_order_goes_where_the_roll_pays_not_where_the_number_was_issued(found):
    assert routed(found, "paid_after_death", hexed(BORN_UNDER_RETIRED_CODE)) == ("330106", "roll")
    assert routed(found, "paid_after_death", hexed(BORN_IN_HENAN)) == ("330110", "roll")
    assert routed(found, "paid_in_custody", hexed(PRISONER)) == ("330127", "roll")
    assert routed(found, "duplicate_receipt", hexed(TWICE)) == ("330111", "roll")  # paid through the later month
    detail = json.loads(found[("paid_after_death", hexed(BORN_IN_HENAN))]["detail"])
    assert detail["paying_entry"] == "RE02" and detail["death_date"] == str(DEATH)  # the rule's evidence kept


def test_a_person_who_moved_goes_to_the_new_district(found):
    assert routed(found, "paid_after_death", hexed(MOVED_SAME_ENTRY)) == ("330109", "roll")
    assert routed(found, "paid_after_death", hexed(MOVED_NEW_ENTRY)) == ("330108", "roll")
    assert json.loads(found[("paid_after_death", hexed(MOVED_NEW_ENTRY))]["detail"])["paying_entry"] == "RE05"


def test_without_a_roll_entry_the_number_routes_and_the_evidence_says_so(found):
    assert routed(found, "bill_after_death", hexed(NOT_IN_ROLL_HENAN)) == ("410102", "identity number")
    assert routed(found, "bill_after_death", hexed(NOT_IN_ROLL_RETIRED)) == ("330103", "identity number")
    assert "paying_entry" not in json.loads(found[("bill_after_death", hexed(NOT_IN_ROLL_RETIRED))]["detail"])
    assert routed(found, "paid_after_death", hexed(NO_DISTRICT)) == ("330103", "identity number")


def test_the_roll_says_whether_it_named_the_paying_district():
    """load.feed_sql keeps a roll entry's paying_district as its area, else the number's, and says which."""
    from fundx.core.identity import id_check_char
    from matching import load, pseudonym

    table, sql, _vault = load.feed_sql("social_insurance.benefit_roll")
    numbers = [f"{a}19500101001" + id_check_char(f"{a}19500101001") for a in ("330103", "410102")]
    src = pa.Table.from_pylist([
        {"entry_id": f"RE{k}", "id_number": n, "name": "张三", "spouse_id_number": None, "paying_district": d,
         "scheme": "basic_pension", "monthly_amount": 1.0, "bank_account": "6222000011112222", "status": "active",
         "start_month": "2020-01", "stop_month": None, "paid_through": "2026-10"}
        for k, (n, d) in enumerate(zip(numbers, (None, "330110")))])
    con = duckdb.connect()
    pseudonym.install(con, os.urandom(32))
    con.register("src", src)
    rows = con.sql(f"SELECT record_key, area, district_given FROM ({sql}) ORDER BY record_key").fetchall()
    assert table == "roll" and rows == [("RE0", "330103", False), ("RE1", "330110", True)]


def test_a_bill_goes_to_the_hospital_and_the_patient_to_the_paying_office(found):
    assert routed(found, "bill_over_mean", "YB-D7") == ("330102", "hospital")      # the hospital: 上城区
    assert routed(found, "bill_after_death", hexed(PATIENT)) == ("330110", "roll")  # the person: 余杭区
    assert routed(found, "hospital_over_mean", COSTLY) == ("330108", "hospital")


def test_an_employer_goes_to_its_registration_district(found):
    assert routed(found, "deregistered_subsidised", ENDED) == ("330109", "registration")
    assert routed(found, "deregistered_contributing", ENDED) == ("330109", "registration")
    # the employer with most months without a wage (钱塘区), not the worker's number (西湖区) or roll (上城区)
    assert routed(found, "contributions_without_wage", hexed(WORKER)) == ("330114", "registration")


def test_a_contributor_in_custody_goes_where_the_roll_pays_else_where_the_employer_insures(found):
    assert routed(found, "contributions_in_custody", hexed(PRISONER)) == ("330127", "roll")
    assert routed(found, "contributions_in_custody", hexed(PRISONER_WORKING)) == ("330114", "registration")


def test_an_account_goes_to_the_office_paying_into_it(found):
    assert routed(found, "shared_account", b"ACCOUNT-SHARED-01".hex().upper()) == ("330113", "roll")
    # no entry of the roll pays into it: the paying district of the people paid into it (not 北京's number)
    assert routed(found, "shared_account", b"ACCOUNT-SHARED-02".hex().upper()) == ("330182", "roll")


def test_the_choice_of_entry_does_not_depend_on_the_order_rows_are_read_in(found):
    again = {(r["rule"], r["subject"]): r for r in run(reverse=True)}
    assert {k: (r["area"], r["detail"]) for k, r in again.items()} == \
        {k: (r["area"], r["detail"]) for k, r in found.items()}


def test_the_orders_name_the_paying_district_and_never_abroad_when_the_roll_pays(found, ledger):
    got = {(o.rule, o.subject): o for o in mo.record(ledger, NIGHT, frame(found))}
    district = lambda rule, subject: (got[(rule, subject)].area, got[(rule, subject)].district)  # noqa: E731
    assert district("paid_after_death", hexed(BORN_UNDER_RETIRED_CODE)) == ("330106", "西湖区")
    assert district("paid_after_death", hexed(BORN_IN_HENAN)) == ("330110", "余杭区")
    assert district("paid_after_death", hexed(MOVED_SAME_ENTRY)) == ("330109", "萧山区")
    assert district("paid_in_custody", hexed(PRISONER)) == ("330127", "淳安县")
    assert district("bill_after_death", hexed(NOT_IN_ROLL_RETIRED)) == ("330105", "拱墅区")  # 下城区's successor
    assert district("bill_after_death", hexed(NOT_IN_ROLL_HENAN)) == ("410102", "外地 410102")
    assert district("bill_over_mean", "YB-D7") == ("330102", "上城区")
    assert district("contributions_without_wage", hexed(WORKER)) == ("330114", "钱塘区")
    assert district("deregistered_subsidised", CITY_LEVEL) == ("330100", "杭州市本级")
    for (rule, subject), order in got.items():
        if json.loads(found[(rule, subject)]["detail"])["routed_by"] != "identity number":
            assert not order.district.startswith("外地"), (rule, order.district)


def test_a_city_level_code_is_the_citys_not_abroad():
    """A credit code registered by the city's own bureau (330100: 杭州市市场监督管理局) or a hospital coded
    under the city's code: the city's, named so, never 外地."""
    assert mo.route("330100") == "330100" and mo.district_of("330100") == "杭州市本级"
    assert mo.area_of("杭州市本级") == "330100" and mo.area_of("330100") == "330100"
    assert mo.district_of("330103") == "拱墅区" and mo.district_of("410102") == "外地 410102"


@pytest.mark.parametrize("people,seed", [(3_000, 7)])
def test_on_the_sandbox_people_paid_elsewhere_than_their_number_go_to_the_paying_district(people, seed):
    """The sandbox's roll pays many people in another district than the one in their number (numbers of
    other provinces, of retired codes, of other districts): each of their orders goes to the roll's district."""
    from contracts.validate import check
    from matching import load, pseudonym
    from sandbox.city import generate_city

    key = os.urandom(32)
    city = generate_city(people, seed=seed)
    roll = city.office["social_insurance.benefit_roll"]
    differ = roll[roll["id_number"].str[:6] != roll["paying_district"]]
    assert len(differ) > 0.2 * len(roll), "the sandbox pays nobody outside the district of their number"
    con = duckdb.connect()
    pseudonym.install(con, key)
    tables: dict[str, list[pa.Table]] = {}
    for feed, frame in {**city.feeds, **city.office}.items():
        con.register("src", pa.Table.from_pandas(check(feed, frame).valid, preserve_index=False))
        table, sql, _vault = load.feed_sql(feed)
        tables.setdefault(table, []).append(con.sql(
            f"SELECT *, TIMESTAMPTZ '2026-11-02 00:00:00+08' AS received_at FROM ({sql})").to_arrow_table())
        con.unregister("src")
    params = rules.parse_params(None)
    rules.prepare(con, rules.Inputs({t: pa.concat_tables(p, promote_options="default") for t, p in tables.items()}),
                  params)
    found = rules.run_rules(con, params, NIGHT).to_pylist()
    paying = {pseudonym.token(key, i).hex().upper(): a for i, a in zip(roll["id_number"], roll["paying_district"])}
    moved = {pseudonym.token(key, i).hex().upper() for i in differ["id_number"]}
    checked = 0
    for r in found:
        if json.loads(r["detail"])["routed_by"] != "identity number":  # the roll, a hospital, an employer
            assert not mo.district_of(r["area"]).startswith("外地"), r["rule"]
        if rules.RULES[r["rule"]].routing in ("person", "insured") and r["subject"] in paying:
            assert r["area"] == paying[r["subject"]], r["rule"]
            assert json.loads(r["detail"])["routed_by"] == "roll"
            assert not mo.district_of(r["area"]).startswith("外地")
            checked += r["subject"] in moved
        if r["rule"] in ("bill_over_mean", "hospital_over_mean"):
            assert r["area"] == json.loads(r["detail"])["hospital_code"][1:7]
            assert not mo.district_of(r["area"]).startswith(("外地", "杭州市本级"))  # the sandbox's hospitals: districts
    assert checked > 0, "no planted case of a person paid outside their number's district"


def test_a_move_after_the_order_was_issued_moves_it_until_someone_takes_it(ledger):
    """An order nobody has taken follows the person to the new paying office (a version says so); once an inspector
    has taken it, it stays with them, and the evidence names where it would go now."""
    from datetime import timedelta

    from matching import cases
    from matching import lifecycle as lc

    subject = hexed(MOVED_SAME_ENTRY)
    first = {(o.rule, o.subject): o for o in mo.record(ledger, NIGHT, frame(run(before_the_move=True)))}
    assert first[("paid_after_death", subject)].district == "上城区"
    second = {(o.rule, o.subject): o for o in mo.record(ledger, NIGHT + timedelta(days=1), frame(run()))}
    order = second[("paid_after_death", subject)]
    assert order.order_id == first[("paid_after_death", subject)].order_id
    assert (order.area, order.district) == ("330109", "萧山区")
    history = cases.versions(ledger, order.order_id)
    assert [json.loads(v["detail"])["routed_to"] for v in history] == ["330102", "330109"]
    assert "routed to 萧山区" in history[-1]["reason"]
    # taken by an inspector in 萧山区, then the person moves back: the case stays where it is worked
    lc.take(ledger, order.order_id, actor=lc.Actor("inspector.yu", "inspector"))
    third = {(o.rule, o.subject): o for o in mo.record(ledger, NIGHT + timedelta(days=2),
                                                        frame(run(before_the_move=True)))}
    kept = third[("paid_after_death", subject)]
    assert (kept.area, kept.stage) == ("330109", "in_progress")
    assert json.loads(cases.versions(ledger, order.order_id)[-1]["detail"])["routed_to"] == "330102"
