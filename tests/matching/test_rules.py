"""The rules against the generator's planted truths, without the exchange: every planted case is
found by its rule and nothing else is flagged (precision and recall per rule are printed)."""

from __future__ import annotations

import json
import os
import re
from datetime import date

import duckdb
import pyarrow as pa
import pytest

from contracts.validate import check
from matching import evaluate, load, pseudonym, rules
from sandbox.city import generate_city

KEY = os.urandom(32)


def _inputs(city) -> rules.Inputs:
    """The tables the stores would hold after a night: contract-valid rows, pseudonymised (the office's
    feeds as every other's)."""
    con = duckdb.connect()
    pseudonym.install(con, KEY)
    tables: dict[str, list[pa.Table]] = {}
    for feed, frame in {**city.feeds, **city.office}.items():
        valid = check(feed, frame).valid
        con.register("src", pa.Table.from_pandas(valid, preserve_index=False))
        table, sql, _vault = load.feed_sql(feed)
        tables.setdefault(table, []).append(
            con.sql(f"SELECT *, 'b' AS batch, TIMESTAMPTZ '2026-11-02 00:00:00+08' AS received_at FROM ({sql})")
            .to_arrow_table())
        con.unregister("src")
    return rules.Inputs({t: pa.concat_tables(parts, promote_options="default") for t, parts in tables.items()})


@pytest.mark.parametrize("people,seed", [(3_000, 7), (10_000, 20261123), (10_000, 7)])
def test_every_planted_case_is_found_and_nothing_else(people, seed, capsys):
    city = generate_city(people, seed=seed)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23))
    pairs = list(zip(found.column("rule").to_pylist(), found.column("subject").to_pylist()))
    scores = evaluate.score(pairs, city.truths, KEY)
    with capsys.disabled():
        print(f"\ncity of {people:,} (seed {seed}): rule, planted, found, precision, recall, look-alikes flagged")
        for s in scores:
            print(f"  {s.rule:<26} {s.planted:>5} {s.found:>5} {s.precision!s:>5} {s.recall!s:>5} "
                  f"{s.lookalikes_flagged:>3} of {s.lookalikes}")
    for s in scores:
        assert s.planted > 0, f"the sandbox plants no case of {s.rule}"
        assert (s.found, s.true_positive) == (s.planted, s.planted), s
        assert s.lookalikes_flagged == 0, s
        if s.rule in ("frequent_visits", "bill_over_mean", "hospital_over_mean", "bill_after_death", "bill_in_custody",
                      "overlapping_stays"):
            assert s.lookalikes > 0, f"the sandbox plants no look-alike of {s.rule}"


def test_amounts_follow_the_truths():
    city = generate_city(10_000)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23)).to_pylist()
    by = {(r["rule"], r["subject"]): r for r in found}
    for t in city.truths["dead_but_paid"]:
        got = by[("paid_after_death", pseudonym.token(KEY, t["id_number"]).hex().upper())]
        assert got["months"] == t["months_after_death"]
        assert got["amount_at_risk"] == pytest.approx(t["months_after_death"] * t["monthly_amount"], abs=0.01)
        assert "*" in got["id_masked"] and t["id_number"] not in got["detail"]
    for t in city.truths["stopped_but_overpaid"]:  # stopped in the roll, paid on in the ledger: what was paid
        got = by[("paid_after_death", pseudonym.token(KEY, t["id_number"]).hex().upper())]
        assert (got["months"], got["amount_at_risk"]) == (t["months_after_death"], pytest.approx(t["amount"], abs=0.01))
        assert json.loads(got["detail"])["paid_through"] == t["paid_months"][-1] and t["status"] == "stopped"
    ledger = city.office["social_insurance.payments"]
    for t in city.truths["prisoners_paid"]:  # what the ledger paid after the admission month (it keeps 12 months)
        got = by[("paid_in_custody", pseudonym.token(KEY, t["id_number"]).hex().upper())]
        admitted = rules.month_no(date.fromisoformat(t["admitted_on"]))
        paid = ledger[(ledger["id_number"] == t["id_number"])
                      & (ledger["month"].str[:4].astype(int) * 12 + ledger["month"].str[5:].astype(int) - 1 > admitted)]
        assert 1 <= got["months"] == paid["month"].nunique() <= t["months"]
        assert got["amount_at_risk"] == pytest.approx(paid["amount"].sum(), abs=0.01)


def test_people_of_a_real_city_are_found_whatever_their_numbers_and_names():
    """Pensions paid after death of people whose numbers were first issued in other provinces, whose
    paper register knows them by a 15-digit number, or whom two sources report a day apart: found,
    with the later date; a minority name written in two forms of the dot is one name."""
    import json

    from fundx.core.identity import upgrade_id15
    from sandbox.city.messiness import OLD_NUMBER_KIND

    city = generate_city(10_000)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = {r["subject"]: r for r in rules.run_rules(con, params, date(2026, 11, 23), ["paid_after_death"]).to_pylist()}
    tok = lambda i: pseudonym.token(KEY, i).hex().upper()  # noqa: E731
    planted = {t["id_number"]: t for t in city.truths["dead_but_paid"]}
    late = {t["id_number"] for t in city.truths["stopped_but_overpaid"]}  # found by the ledger (below)
    assert {tok(i) for i in [*planted, *late]} == set(found)
    elsewhere = [i for i in planted if not i.startswith("3301")]
    old = {m["clean"] for m in city.truths["messy"] if m["kind"] == OLD_NUMBER_KIND} & set(planted)
    assert elsewhere and old
    for i in old:  # the register's 15-digit number joined the roll's 18-character one
        assert any(upgrade_id15(m["value"]) == i for m in city.truths["messy"] if m["kind"] == OLD_NUMBER_KIND)
    view = {r["person"]: r for r in rules.deaths(con).to_pylist()}
    for t in city.truths["near_dates"]:
        row = view[tok(t["id_number"])]
        assert (str(row["death_date"]), row["confidence"]) == (t["death_date"], "confirmed")
    for subject, row in found.items():
        assert json.loads(row["detail"])["names"] == 1, subject  # every source gives one name, dots and all


def test_name_tokens_agree_across_dot_forms():
    con = duckdb.connect()
    pseudonym.install(con, KEY)
    forms = ["买买提·艾力", "买买提•艾力", "买买提・艾力", "买买提‧艾力", "买买提･艾力", "买买提ㆍ艾力", "买买提．艾力",
             " 买买提.艾力 ", "买买提　·　艾力"]
    tokens = {t for (t,) in con.execute("SELECT token(name_key(n)) FROM unnest(?) AS u(n)", [forms]).fetchall()}
    assert len(tokens) == 1
    others = ["买买提艾力", "买买提·艾力江", "张欣𠮷", "张欣吉"]  # no dot, another name, a rare character kept
    more = {t for (t,) in con.execute("SELECT token(name_key(n)) FROM unnest(?) AS u(n)", [others]).fetchall()}
    assert len(more) == 4 and not more & tokens
    # the SQL form is fundx.core.identity.normalize_name's, character for character (white space, dots, NFC)
    from fundx.core.identity import normalize_name

    names = ["王" + chr(c) + "芳" for c in [*range(1, 0x3100), 0x202F, 0xFEFF, 0xFF0E, 0xFF65]]
    got = [k for (k,) in con.execute("SELECT name_key(n) FROM unnest(?) WITH ORDINALITY AS u(n, i) ORDER BY i",
                                      [names]).fetchall()]
    assert got == [normalize_name(n) for n in names]


@pytest.fixture(scope="module")
def death_city():
    return generate_city(10_000)


def test_death_consolidation_confidence(death_city):
    city = death_city
    con = duckdb.connect()
    rules.prepare(con, _inputs(city), rules.parse_params(None))
    view = {r["person"]: r for r in rules.deaths(con).to_pylist()}
    tok = lambda i: pseudonym.token(KEY, i).hex().upper()  # noqa: E731
    conflicts = {tok(c["id_number"]) for c in city.truths["date_conflicts"]}
    assert conflicts and all(view[p]["confidence"] == "conflict" for p in conflicts if p in view)
    assert rules.confirming_feeds() == ["police.deaths"]  # its config's matching: says confirms: true
    for s in city.truths["single_source_deaths"]:
        p = tok(s["id_number"])
        if p in view:
            want = "confirmed" if s["feed"] == "police.deaths" else "probable"
            assert view[p]["confidence"] == want, s["feed"]
    assert {r["confidence"] for r in view.values()} == {"confirmed", "probable", "conflict"}


def test_which_sources_confirm_a_death_alone_is_the_feed_configs_say(death_city, tmp_path, monkeypatch):
    """Without confirms: true in police.deaths.yaml a death only the police report is probable, like any other."""
    import shutil

    import connectors
    import contracts
    from fundx.core.settings import reload_settings

    feeds = tmp_path / "feeds"
    shutil.copytree(connectors.FEEDS_DIR, feeds)
    police = feeds / "police.deaths.yaml"
    police.write_text(re.sub(r"(?m)^  confirms: true.*\n", "", police.read_text(encoding="utf-8")), encoding="utf-8")
    monkeypatch.setenv("FUNDX_FEEDS_DIR", str(feeds))
    monkeypatch.setenv("FUNDX_CONTRACTS_DIR", str(contracts.CONTRACTS_DIR))
    reload_settings()
    try:
        assert rules.confirming_feeds() == []
        con = duckdb.connect()
        rules.prepare(con, _inputs(death_city), rules.parse_params(None))
        view = {r["person"]: r for r in rules.deaths(con).to_pylist()}
        police_only = [pseudonym.token(KEY, s["id_number"]).hex().upper()
                       for s in death_city.truths["single_source_deaths"] if s["feed"] == "police.deaths"]
        assert any(p in view for p in police_only)
        assert all(view[p]["confidence"] == "probable" for p in police_only if p in view)
    finally:
        monkeypatch.undo()
        reload_settings()


def test_bad_parameters_are_named():
    from fundx.core.errors import ConfigurationError

    assert rules.parse_params({"frequent_visits.min_visits": "20"})["frequent_visits"]["min_visits"] == 20
    for bad in ({"nope.x": "1"}, {"frequent_visits.min_visits": "many"}, {"bill_over_mean.over": "-1"}):
        with pytest.raises(ConfigurationError, match=next(iter(bad)).split(".")[0]):
            rules.parse_params(bad)


def test_every_feed_says_what_its_stage_keeps_and_a_missing_column_is_named(tmp_path, monkeypatch):
    from connectors import feed_names
    from fundx.core.errors import ConfigurationError

    for feed in feed_names():
        _table, sql, vault = load.feed_sql(feed)
        # never kept: the vault has them; a name only as the token of its normalised form (name_token)
        assert not re.search(r'AS "?(id_number|name)"?(?!\w)', sql), feed
        assert ("token(name_key(" in sql) == (" AS name_token" in sql)
        assert vault is None or " AS id_number" in vault
    import connectors

    real = connectors.load_feed("police.deaths")
    broken = real.model_copy(update={"matching": real.matching.model_copy(
        update={"columns": {k: v for k, v in real.matching.columns.items() if k != "death_date"}})})
    monkeypatch.setattr(connectors, "load_feed", lambda feed: broken)
    with pytest.raises(ConfigurationError, match="police.deaths.*death_date"):
        load.feed_sql("police.deaths")


def test_the_office_roll_is_kept_pseudonymised_with_months_as_numbers():
    """What death matching keeps of a roll batch: tokens and masked forms for the number and the account,
    months as month numbers, the paying district as the area (the number's area where the roll has none)."""
    frame = pa.table({
        "entry_id": ["RE0000000001", "RE0000000002"], "id_number": ["11010519491231002X", "330106195001010014"],
        "name": ["王芳", "李强"], "spouse_id_number": ["330106195001010014", None],
        "scheme": ["basic_pension", "survivor"], "status": ["active", "stopped"],
        "paying_district": ["330106", None], "monthly_amount": [3800.5, 900.0],
        "bank_account": ["6222021234567890123", "6217001234567890"], "start_month": ["2010-01", "2020-12"],
        "stop_month": [None, "2026-03"], "paid_through": ["2026-10", "2026-02"],
        "updated_at": ["2026-10-10 10:00:00", "2026-03-02 09:00:00"]})
    con = duckdb.connect()
    pseudonym.install(con, KEY)
    table, sql, vault = load.feed_sql("social_insurance.benefit_roll")
    con.register("src", frame)
    kept = con.sql(sql).to_arrow_table().to_pylist()
    assert table == "roll" and vault is not None
    assert [r["area"] for r in kept] == ["330106", "330106"]
    assert kept[0]["account"] == pseudonym.token(KEY, "6222021234567890123")
    # the spouse on file: the spouse's token (the person token of that number), nothing else of it
    assert kept[0]["spouse"] == pseudonym.token(KEY, "330106195001010014") == kept[1]["person"]
    assert kept[1]["spouse"] is None
    assert [r["account_masked"] for r in kept] == ["6222***********0123", "6217********7890"]
    assert [(r["start_month"], r["stop_month"], r["paid_through"]) for r in kept] == [
        (rules.month_no(date(2010, 1, 1)), None, rules.month_no(date(2026, 10, 1))),
        (rules.month_no(date(2020, 12, 1)), rules.month_no(date(2026, 3, 1)), rules.month_no(date(2026, 2, 1)))]
    text = repr(kept)
    assert "6222021234567890123" not in text and "11010519491231002X" not in text and "王芳" not in text
    assert set(rules.EMPTY["roll"].replace(",", " ").split()[::2]) - {"received_at"} <= set(kept[0])


def test_paid_after_death_reads_the_ledger_not_payment_dates():
    """死亡冒领 / 死亡未停发 (seeds 002, the 2025 national work plan's monthly lists; 000, Shenyang's check of
    死亡人员冒领养老保险待遇) over the payment ledger. Look-alikes that must not be flagged: the dead whose
    month of death was paid on the 10th, after they died (a death reported a day or more late, the entry
    stopped in time: the month of death is payable). Found: exactly the people paid for months after
    the month of death, active entries and entries stopped too late alike."""
    city = generate_city(10_000)
    ledger = city.office["social_insurance.payments"]
    deaths = {}
    for t in city.truths["dead_but_paid"] + city.truths["stopped_but_overpaid"]:
        deaths[t["id_number"]] = t["death_date"]
    # the look-alikes: dead on the roll, paid on a day after their death for the month they died in, no later month
    died = {}
    for feed in ("civil_affairs.deaths", "police.deaths"):
        frame = city.feeds[feed]
        valid = check(feed, frame).valid
        for i, d in zip(valid["id_number"], valid["death_date"]):
            if isinstance(d, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", d):
                died[i] = max(died.get(i, d), d)
    lookalikes = set()
    for i, month, paid_at in zip(ledger["id_number"], ledger["month"], ledger["paid_at"]):
        d = died.get(i)
        if d is not None and i not in deaths and month == d[:7] and paid_at[:10] > d:
            lookalikes.add(i)
    assert len(lookalikes) >= 5
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = set(rules.run_rules(con, params, date(2026, 11, 23), ["paid_after_death"]).column("subject").to_pylist())
    tok = lambda i: pseudonym.token(KEY, i).hex().upper()  # noqa: E731
    assert not {tok(i) for i in lookalikes} & found
    assert found == {tok(i) for i in deaths}


HISTORY_RULES = ["paid_in_custody", "contributions_in_custody", "retired_in_custody", "deregistered_contributing",
                 "contributions_without_wage"]


@pytest.mark.parametrize("people,seed", [(3_000, 20261123), (10_000, 7)])
def test_history_rules_find_their_cases_and_no_lookalike(people, seed):
    """Custody over history and the employer rules: precision and recall 1.0, no planted look-alike flagged."""
    city = generate_city(people, seed=seed)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23), HISTORY_RULES)
    pairs = list(zip(found.column("rule").to_pylist(), found.column("subject").to_pylist()))
    scores = {s.rule: s for s in evaluate.score(pairs, city.truths, KEY)}
    for rule in HISTORY_RULES:
        s = scores[rule]
        assert s.planted >= 2 and s.lookalikes >= 2, s
        assert (s.found, s.true_positive, s.lookalikes_flagged) == (s.planted, s.planted, 0), s


def test_history_rules_carry_what_was_paid_and_masked_evidence():
    city = generate_city(3_000)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23), HISTORY_RULES).to_pylist()
    by = {(r["rule"], r["subject"]): r for r in found}
    tok = lambda i: pseudonym.token(KEY, i).hex().upper()  # noqa: E731
    for t in city.truths["released_paid"]:  # a past custody: the months the ledger paid inside it
        got = by[("paid_in_custody", tok(t["id_number"]))]
        detail = json.loads(got["detail"])
        assert detail["paid_months"] == t["paid_months"] and got["months"] == len(t["paid_months"])
        assert got["amount_at_risk"] == pytest.approx(t["amount"], abs=0.01)
        assert detail["custody"][0]["prisoner_id"] == t["prisoner_id"] and detail["custody"][0]["status"] == "刑满释放"
    for t in city.truths["contributed_in_custody"]:
        got = by[("contributions_in_custody", tok(t["id_number"]))]
        assert json.loads(got["detail"])["contribution_months"] == t["months"]
        assert got["amount_at_risk"] == pytest.approx(t["amount"], abs=0.01)
    for t in city.truths["retired_in_custody"]:
        got = by[("retired_in_custody", tok(t["id_number"]))]
        assert (got["months"], got["amount_at_risk"]) == (t["months"], pytest.approx(t["amount"], abs=0.01))
        assert json.loads(got["detail"])["entries"][0]["start_month"] == t["start_month"]
    for t in city.truths["deregistered_contributing"]:
        got = by[("deregistered_contributing", t["uscc"])]
        detail = json.loads(got["detail"])
        assert (detail["months"], detail["end_date"], detail["status"]) == (t["months"], t["end_date"], t["status"])
        assert got["amount_at_risk"] == pytest.approx(t["amount"], abs=0.01) and len(got["persons"]) == 1
    wanted: dict[str, list[dict]] = {}
    for t in city.truths["no_wage_declared"]:
        wanted.setdefault(t["id_number"], []).append(t)
    for i, ts in wanted.items():
        got = by[("contributions_without_wage", tok(i))]
        assert got["months"] == sum(len(t["months"]) for t in ts)
        assert got["amount_at_risk"] == pytest.approx(sum(t["amount"] for t in ts), abs=0.01)
        assert {e["uscc"]: e["months"] for e in json.loads(got["detail"])["employers"]} == {
            t["employer_uscc"]: t["months"] for t in ts}
    people = {*city.office["social_insurance.benefit_roll"]["id_number"], *city.feeds["justice.prisoners"]["id_number"],
              *city.office["social_insurance.contributions"]["id_number"]}
    for row in found:  # masked evidence only (credit codes are not personal)
        assert row["id_masked"] is None or "*" in row["id_masked"]
        assert not set(re.findall(r"\d{17}[\dXx]", row["detail"])) & people, row["rule"]


def test_paid_in_custody_without_a_ledger_falls_back_on_the_roll():
    """No payment ledger delivered yet: the roll's paid-through months still find those in custody now."""
    city = generate_city(3_000)
    inputs = _inputs(city)
    inputs.tables["payments"] = None
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, inputs, params)
    found = set(rules.run_rules(con, params, date(2026, 11, 23), ["paid_in_custody"]).column("subject").to_pylist())
    # those in custody now, as the rule found them before the ledger came; not the released (the roll cannot tell)
    assert {pseudonym.token(KEY, t["id_number"]).hex().upper() for t in city.truths["prisoners_paid"]} == found


def test_wages_declared_in_the_same_quarter_cover_a_month_unless_the_period_is_one_month():
    city = generate_city(3_000)
    con = duckdb.connect()
    quarterly = {pseudonym.token(KEY, c["id_number"]).hex().upper() for c in city.truths["lookalikes"]
                 if c["kind"] == "declared_quarterly"}
    params = rules.parse_params({"contributions_without_wage.period_months": "1"})
    rules.prepare(con, _inputs(city), params)
    strict = set(rules.run_rules(con, params, date(2026, 11, 23), ["contributions_without_wage"])
                 .column("subject").to_pylist())
    assert quarterly and quarterly <= strict


def test_every_rule_has_an_order_number_and_a_title():
    from matching import orders

    assert set(orders.RULES) == set(rules.RULES) and set(orders.TITLES) == set(rules.RULES)
    assert all(orders.TITLES[name] == rule.title for name, rule in rules.RULES.items())


def test_every_rule_is_defined_in_the_docs_with_its_seed():
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("docs", "matching.md").read_text(encoding="utf-8")
    definitions = {m[1]: m[2] for m in re.finditer(r"\n\d+\. \*\*(\w+)\*\*(.*?)(?=\n\d+\. \*\*|\n\n)", text, re.S)}
    assert set(rules.RULES) <= set(definitions)
    for name in HISTORY_RULES:  # (the older rules' definitions are being given their seeds in issue 19)
        assert "Seed" in definitions[name], name


def test_no_wage_counted_only_for_months_the_bureau_has_declared():
    """A later night (the sandbox's declarations stop at its as-of day): the months after the last declared
    one are not counted, so the same people are found; with no wage feed delivered, nobody."""
    city = generate_city(3_000)
    params = rules.parse_params(None)
    inputs = _inputs(city)
    con = duckdb.connect()
    rules.prepare(con, inputs, params)
    on_time = rules.run_rules(con, params, date(2026, 11, 23), ["contributions_without_wage"]).to_pylist()
    later = rules.run_rules(con, params, date(2027, 1, 20), ["contributions_without_wage"]).to_pylist()
    assert on_time and on_time == later
    inputs.tables["wages"] = None
    con = duckdb.connect()
    rules.prepare(con, inputs, params)
    assert not rules.run_rules(con, params, date(2026, 11, 23), ["contributions_without_wage"]).num_rows


@pytest.fixture(scope="module")
def account_night():
    city = generate_city(10_000, seed=7)
    con = duckdb.connect()
    rules.prepare(con, _inputs(city), rules.parse_params(None))
    return city, con


def _found(con, rule: str, **params) -> dict:
    p = rules.parse_params(None)
    p[rule] |= params
    return {r["subject"]: r for r in rules.run_rules(con, p, date(2026, 11, 23), [rule]).to_pylist()}


def test_account_rules_carry_the_ledgers_months_and_amounts(account_night):
    """shared_account, duplicate_receipt, unemployed_contributing over history: what the ledger paid, in
    which months, with masked evidence only (numbers and accounts masked)."""
    city, con = account_night
    tok = lambda v: pseudonym.token(KEY, v).hex().upper()  # noqa: E731
    shared = _found(con, "shared_account")
    for t in [*city.truths["shared_accounts_history"], *city.truths["accounts_taken_over"]]:
        got = shared[tok(t["bank_account"])]
        detail = json.loads(got["detail"])
        assert (got["months"], got["amount_at_risk"]) == (len(t["months"]), pytest.approx(t["amount"], abs=0.01))
        assert detail["months"] == t["months"] and "*" in got["id_masked"] and "*" in detail["account"]
        assert t["bank_account"] not in got["detail"] and t["bank_account"] not in got["id_masked"]
        assert all(i not in got["detail"] for i in t.get("id_numbers", [t.get("id_number")]))
    for t in city.truths["accounts_taken_over"]:
        (over,) = json.loads(shared[tok(t["bank_account"])]["detail"])["taken_over"]
        assert (over["event"], over["since"], over["changed_on"]) == (t["event"], t["event_date"], t["changed_at"][:10])
        assert "*" in over["former"] and t["former_id_number"] not in over["former"]
    assert {t["event"] for t in city.truths["accounts_taken_over"]} == {"death", "custody"}
    dups = _found(con, "duplicate_receipt")
    for t in city.truths["duplicate_receipts_ended"]:
        got = dups[tok(t["id_number"])]
        assert (got["months"], got["amount_at_risk"]) == (len(t["months"]), pytest.approx(t["amount"], abs=0.01))
        detail = json.loads(got["detail"])
        assert detail["months"] == t["months"] and detail["schemes"] == [t["schemes"]]
        assert all("*" in a for a in detail["accounts"])
    unemployed = _found(con, "unemployed_contributing")
    for t in [*city.truths["unemployed_contributing"], *city.truths["unemployed_contributing_history"]]:
        got = unemployed[tok(t["id_number"])]
        assert (got["months"], got["amount_at_risk"]) == (len(t["months"]), pytest.approx(t["amount"], abs=0.01))
        assert json.loads(got["detail"])["months"] == t["months"]


def test_spouses_are_exempt_only_while_the_parameter_says_so(account_night):
    """Spouses on file sharing an account (and a widow(er) moved onto the late spouse's) are not 多对一 while
    shared_account.exempt_spouses is 1 (the default); set to 0 they are found, so the look-alikes can fail."""
    city, con = account_night
    tok = lambda v: pseudonym.token(KEY, v).hex().upper()  # noqa: E731
    couples = {tok(c["bank_account"]) for c in city.truths["lookalikes"]
               if c["rule"] == "shared_account" and c["kind"] in ("spouses", "spouse_after_death")}
    assert len(couples) >= 3
    assert not couples & set(_found(con, "shared_account"))
    assert couples <= set(_found(con, "shared_account", exempt_spouses=0))
    assert rules.parse_params({"shared_account.exempt_spouses": "0"})["shared_account"]["exempt_spouses"] == 0
    # a threshold of three people leaves the two-person accounts to the take-overs only
    three = _found(con, "shared_account", min_people=3)
    pairs = {tok(t["bank_account"]) for t in city.truths["shared_accounts_history"]}
    taken = {tok(t["bank_account"]) for t in city.truths["accounts_taken_over"]}
    assert not pairs & set(three) and taken <= set(three)


def test_without_a_ledger_the_account_rules_read_the_roll():
    """A store with no payment ledger delivered yet: the three rules fall back on the roll's active entries
    (the roll's groups, active double entries, contributions in an active unemployment entry), said so in
    the detail; the accounts taken over are still found from the change log."""
    city = generate_city(3_000, seed=7)
    inputs = _inputs(city)
    inputs.tables["payments"] = None
    con = duckdb.connect()
    rules.prepare(con, inputs, rules.parse_params(None))
    found = rules.run_rules(con, rules.parse_params(None), date(2026, 11, 23),
                            ["shared_account", "duplicate_receipt", "unemployed_contributing"]).to_pylist()
    tok = lambda v: pseudonym.token(KEY, v).hex().upper()  # noqa: E731
    by = {(r["rule"], r["subject"]): r for r in found}
    want = {("shared_account", tok(t["bank_account"])) for t in city.truths["shared_accounts"]}
    want |= {("duplicate_receipt", tok(t["id_number"])) for t in city.truths["duplicate_receipts"]}
    want |= {("unemployed_contributing", tok(t["id_number"])) for t in city.truths["unemployed_contributing"]}
    # what the roll still shows of the history's cases (entries active now) is found too, no look-alike
    planted = {(rule, s) for rule, subjects in evaluate.planted_subjects(city.truths, KEY).items() for s in subjects}
    alike = {(rule, s) for rule, subjects in evaluate.lookalike_subjects(city.truths, KEY).items() for s in subjects}
    assert want <= set(by) <= planted and not set(by) & alike
    # the take-overs need no ledger: the change log and the roll show them
    assert all(json.loads(r["detail"]).get("from") == "roll" or json.loads(r["detail"]).get("taken_over")
               for r in found)
    for t in city.truths["duplicate_receipts"]:
        got = by[("duplicate_receipt", tok(t["id_number"]))]
        assert (got["months"], got["amount_at_risk"]) == (t["overlap_months"], pytest.approx(t["amount"], abs=0.01))


@pytest.fixture(scope="module")
def bill_review():
    """A city of 10,000 and what the bill rules found in it (night 2026-11-23)."""
    city = generate_city(10_000)
    con = duckdb.connect()
    params = rules.parse_params(None)
    inputs = _inputs(city)
    rules.prepare(con, inputs, params)
    medical = ["frequent_visits", "bill_over_mean", "hospital_over_mean", "bill_after_death", "bill_in_custody",
               "overlapping_stays"]
    found = rules.run_rules(con, params, date(2026, 11, 23), medical).to_pylist()
    return city, inputs, {(r["rule"], r["subject"]): r for r in found}


def test_bill_rules_report_what_the_fund_paid(bill_review):
    """冒名就医 after death, bills in custody, 挂床 stays in two hospitals at once: the amount at risk is what the fund
    paid for the bills (the later stay of each overlapping pair); the evidence is masked and names the bills."""
    city, _inputs, by = bill_review
    tok = lambda i: pseudonym.token(KEY, i).hex().upper()  # noqa: E731
    bills = city.feeds["medical_insurance.bills"].set_index("bill_id")
    for name, rule in (("billed_after_death", "bill_after_death"), ("billed_in_custody", "bill_in_custody"),
                       ("overlapping_stays", "overlapping_stays")):
        assert city.truths[name]
        for t in city.truths[name]:
            got = by[(rule, tok(t["id_number"]))]
            assert got["amount_at_risk"] == pytest.approx(t["amount"], abs=0.01), rule
            assert "*" in got["id_masked"] and t["id_number"] not in got["detail"] and "YB3301" in got["detail"]
            detail = json.loads(got["detail"])
            if rule == "overlapping_stays":
                (pair,) = detail["stays"]
                assert [pair["first"]["bill_id"], pair["second"]["bill_id"]] == t["bills"]
                assert pair["first"]["hospital_code"] != pair["second"]["hospital_code"] and pair["overlap_days"] > 0
            else:
                assert sorted(b["bill_id"] for b in detail["bills"]) == t["bills"]
                assert sum(b["fund_amount"] for b in detail["bills"]) == pytest.approx(
                    float(bills.loc[t["bills"], "fund_amount"].sum()), abs=0.01)
            if rule == "bill_after_death":
                assert detail["death_date"] == t["death_date"] and detail["sources"]
            if rule == "bill_in_custody":
                assert detail["custody"]["prisoner_id"] == t["prisoner_id"]
    for t in city.truths["frequent_across_months"]:  # their only bills: all inside the window
        got = by[("frequent_visits", tok(t["id_number"]))]
        mine = city.feeds["medical_insurance.bills"]["id_number"] == t["id_number"]
        fund = city.feeds["medical_insurance.bills"].loc[mine, "fund_amount"].sum()
        assert got["amount_at_risk"] == pytest.approx(fund, abs=0.01) and got["months"] == 2
        assert json.loads(got["detail"])["most_in_window"] == t["most_in_30_days"]
    for t in city.truths["overbilled"] + city.truths["overbilled_at_hospital"]:
        got = by[("bill_over_mean", t["bill_id"])]
        detail = json.loads(got["detail"])
        excess = (detail["total_amount"] - detail["mean"]) / detail["total_amount"]
        assert got["amount_at_risk"] == pytest.approx(detail["fund_amount"] * excess, abs=0.01)
        assert 0 < got["amount_at_risk"] < detail["fund_amount"] and detail["peers"] >= 30
    (costly,) = city.truths["costly_hospitals"]
    got = by[("hospital_over_mean", costly["hospital_code"])]
    assert got["persons"] == [] and got["area"] == costly["hospital_code"][1:7] and got["amount_at_risk"] > 0
    (diagnosis,) = json.loads(got["detail"])["diagnoses"]
    assert (diagnosis["diagnosis_code"], diagnosis["setting"], diagnosis["bills"]) == ("I10", "outpatient",
                                                                                        costly["bills"])
    assert diagnosis["cost_index"] > 1.2
    kinds = {a["rule"] for a in city.truths["lookalikes"]}
    assert kinds >= {"frequent_visits", "hospital_over_mean", "bill_after_death", "bill_in_custody",
                     "overlapping_stays"}


def test_bill_rules_read_bills_stored_before_the_hospital_and_the_fund_were_kept(bill_review):
    """Batches stored before the bills kept hospital_code, discharged_on and fund_amount: NULL there; the rules
    that need them find nothing, the others use the bill's total as what the fund paid."""
    _city, inputs, _by = bill_review
    old = inputs.tables["bills"].drop(["hospital_code", "discharged_on", "fund_amount"])
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, rules.Inputs({**inputs.tables, "bills": old}), params)
    found = rules.run_rules(con, params, date(2026, 11, 23), ["bill_over_mean", "hospital_over_mean",
                                                               "overlapping_stays", "bill_after_death"]).to_pylist()
    assert {r["rule"] for r in found} == {"bill_over_mean", "bill_after_death"}
    for r in found:
        if r["rule"] == "bill_over_mean":
            detail = json.loads(r["detail"])
            assert r["amount_at_risk"] == pytest.approx(detail["total_amount"] - detail["mean"], abs=0.01)


def test_the_bill_rules_parameters_move_their_lines(bill_review):
    """The line is a parameter: with min_visits 14 the look-alike (14 visits in 30 days) becomes a case."""
    city, inputs, _by = bill_review
    con = duckdb.connect()
    params = rules.parse_params({"frequent_visits.min_visits": "14"})
    rules.prepare(con, inputs, params)
    found = rules.run_rules(con, params, date(2026, 11, 23), ["frequent_visits"]).column("subject").to_pylist()
    alike = {pseudonym.token(KEY, a["id_number"]).hex().upper() for a in city.truths["lookalikes"]
             if a["rule"] == "frequent_visits"}
    assert alike and alike <= set(found)


def test_the_bill_rules_boundaries_on_a_handful_of_bills():
    """Each line drawn where docs/matching.md draws it, on bills made by hand: a bill on the day of death or of
    admission to custody is not flagged, the day after is; stays that touch are not, one day of overlap is;
    14 visits in 30 days are not, 15 across a month boundary are; a prisoner listed twice counts a bill once."""
    from datetime import timedelta

    def person(n: int) -> bytes:
        return n.to_bytes(16, "big")

    bills: list[dict] = []

    def bill(who: int, day: date, *, hospital: str = "H33010600001", until: date | None = None, fund: float = 10.0):
        bills.append({"record_key": f"YB{len(bills):016d}", "person": person(who), "id_masked": "330106********0011",
                      "area": "330106", "hospital_code": hospital, "diagnosis_code": "I10", "inpatient": until is not None,
                      "admitted_on": day, "discharged_on": until, "total_amount": 100.0, "fund_amount": fund})

    death, taken = date(2026, 5, 10), date(2026, 3, 1)
    bill(1, death)                                    # the day of death: not after it
    bill(2, death + timedelta(days=1), fund=7.5)      # the day after: 冒名就医
    bill(3, taken)                                    # the day of admission to custody: not custody yet
    bill(4, taken + timedelta(days=1), fund=8.0)      # the day after, listed twice by the prisons: counted once
    bill(5, date(2026, 4, 1), hospital="H33010600001", until=date(2026, 4, 10))
    bill(5, date(2026, 4, 10), hospital="H33010600002", until=date(2026, 4, 20))   # touches: a transfer
    bill(6, date(2026, 4, 1), hospital="H33010600001", until=date(2026, 4, 10))
    bill(6, date(2026, 4, 9), hospital="H33010600002", until=date(2026, 4, 20), fund=50.0)  # one night in two beds
    for k in range(14):                               # 14 visits in 30 days
        bill(7, date(2026, 6, 20) + timedelta(days=2 * k))
    for k in range(15):                               # 15 in 29 days, 7 in June and 8 in July
        bill(8, date(2026, 6, 17) + timedelta(days=2 * k))
    deaths = [{"feed": "civil_affairs.deaths", "record_key": f"MZ{n}", "person": person(n),
               "id_masked": "330106********0011", "area": "330106", "death_date": death, "name_token": None}
              for n in (1, 2)]
    custody = [{"record_key": f"ZF{n}{k}", "person": person(n), "id_masked": "330106********0011", "area": "330106",
                "custody_status": "在押", "admitted_on": taken, "sentence_start": taken,
                "sentence_end": date(2030, 1, 1)} for n in (3, 4) for k in ((0, 1) if n == 4 else (0,))]
    def table(rows: list[dict]) -> pa.Table:
        return pa.Table.from_pylist([{**r, "received_at": None} for r in rows])

    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, rules.Inputs({"bills": table(bills), "deaths": table(deaths), "custody": table(custody)}), params)
    found = rules.run_rules(con, params, date(2026, 11, 23), ["bill_after_death", "bill_in_custody",
                                                               "overlapping_stays", "frequent_visits"]).to_pylist()
    got = {(r["rule"], r["subject"]): r["amount_at_risk"] for r in found}
    hexed = lambda n: person(n).hex().upper()  # noqa: E731
    assert got == {("bill_after_death", hexed(2)): 7.5, ("bill_in_custody", hexed(4)): 8.0,
                   ("overlapping_stays", hexed(6)): 50.0, ("frequent_visits", hexed(8)): 150.0}


def test_tokens_made_once_per_distinct_value_are_the_tokens_of_every_row_in_the_rows_order():
    """load.with_tokens (each distinct value tokenised once) keeps what the inline token() gives, for every feed
    of a city: the same rows in the same order, NULL where a value is (a spouse not given, a name missing)."""
    city = generate_city(people=1_500, seed=5)
    con = duckdb.connect()
    pseudonym.install(con, KEY)
    for feed, frame in {**city.feeds, **city.office}.items():
        src = pa.Table.from_pandas(check(feed, frame).valid, preserve_index=False)
        src = pa.concat_tables([src, src.slice(0, 7)])  # values repeated within the part
        plan = load.feed_plan(feed)
        con.register("src", src)
        inline = con.sql(plan.sql).to_arrow_table()
        vault = con.sql(plan.vault).fetchall() if plan.vault else None
        con.register("src", load.with_tokens(con, src, plan))
        assert con.sql(plan.tokened).to_arrow_table().equals(inline), feed
        # the vault's rows with the tokens with_tokens made: the same rows as computing them again
        assert (sorted(con.sql(plan.vault_tokened).fetchall()) if plan.vault_tokened else None) == (
            sorted(vault) if vault is not None else None), feed
        assert (len(plan.tokens) > 0) == ("token(" in plan.sql), feed
        con.unregister("src")
    empty = load.with_tokens(con, pa.table({"id_number": pa.array([], pa.string())}),
                             load.FeedPlan("t", "", None, ('"id_number"',), ""))
    assert empty.column_names == ["id_number", "__token_0"] and empty.num_rows == 0


def test_the_rules_run_one_at_a_time_in_order_and_one_past_the_memory_limit_is_named():
    """run_rules: one query per rule (so DuckDB holds one rule's joins at a time), ordered as one query's union
    was; a rule that needs more than FUNDX_MATCHING_MEMORY stops with a ConfigurationError naming it."""
    from fundx.core.errors import ConfigurationError

    city = generate_city(3_000, seed=7)
    con = duckdb.connect()
    params = rules.parse_params(None)
    rules.prepare(con, _inputs(city), params)
    found = rules.run_rules(con, params, date(2026, 11, 23))
    keys = list(zip(*(found.column(c).to_pylist() for c in ("rule", "area", "subject"))))
    assert keys == sorted(keys) and set(found.column("rule").to_pylist()) == set(rules.RULES)
    some = ["paid_after_death", "bill_over_mean"]
    alone = rules.run_rules(con, params, date(2026, 11, 23), some)
    assert alone.equals(found.filter(pa.compute.is_in(found.column("rule"), pa.array(some))))
    con.execute("SET memory_limit = '1MB'")
    with pytest.raises(ConfigurationError, match=r"matching rule \w+ needs more memory .*FUNDX_MATCHING_MEMORY") as caught:
        rules.run_rules(con, params, date(2026, 11, 23))
    assert "\n" not in str(caught.value).split("action")[0]


def test_the_evidence_is_the_same_text_however_duckdb_schedules_the_rules():
    """A case found again gets a new version when its detail differs (matching.cases): the same inputs must give
    the same detail text, whatever the threads, so every list a rule aggregates into its evidence is ordered."""
    city = generate_city(3_000, seed=7)
    inputs = _inputs(city)
    params = rules.parse_params(None)
    seen = []
    for threads in (1, 4):
        con = duckdb.connect(config={"threads": threads})
        rules.prepare(con, inputs, params)
        found = rules.run_rules(con, params, date(2026, 11, 23))
        seen.append(dict(zip(zip(found.column("rule").to_pylist(), found.column("subject").to_pylist()),
                             found.column("detail").to_pylist())))
    assert seen[0].keys() == seen[1].keys()
    differ = sorted({rule for key, rule in ((k, k[0]) for k in seen[0]) if seen[0][key] != seen[1][key]})
    assert differ == []
