"""Build a city: the office's data, the eight feeds and the planted truths, step by step in the order the streams draw.

A city draws from its seeded streams, each for what was added to the generator with it, so that
what existed before a stream was added stays as it was (the golden test, tests/sandbox/
test_generator_golden.py, holds every frame to its bytes):

- main ``seed``: the people, their deaths, the roll, the first three death feeds, the prisoners, the
  shared accounts, the bills and businesses, and the first six feeds' messiness and invalid rows;
- office ``[seed, 99]``: the office's own data (contributions, employer subsidies), the cases of the
  rules added with them (duplicate receipts, the unemployed contributing, frequent patients,
  overbilled bills, deregistered businesses subsidised) and the bills' spread;
- hospital ``[seed, 100]`` and wages ``[seed, 101]``: those feeds' rows, messiness and invalid rows;
- traits ``[seed, 102]``: the population's newer traits (numbers first issued elsewhere or under
  former codes, minority and rare-character names, 15-digit numbers, deaths a day apart, the
  agencies' name forms);
- office history ``[seed, 103]``: the office's system as an agency (sandbox/city/office_feeds.py): its
  five feeds built from the office's tables, with keys, times, the payment ledger and the account
  change log (``City.office``), drawn after everything above;
- accounts ``[seed, 105]``: the office's accounts and entries over history (sandbox/city/accounts.py):
  shared and taken-over accounts, double receipt and unemployment benefit with contributions that
  only the office's feeds show, and their look-alikes, planted in ``City.office`` only, drawn after the
  office's history;
- medical ``[seed, 106]``: bill review's newer cases and look-alikes (sandbox/city/medical.py: bills after
  death or in custody, overlapping stays, visits across a month boundary, a costly hospital), drawn after
  the accounts': only the bills and the truths change;
- history's cases ``[seed, 104]``: the rules over history (issue 19) of custody and employers
  (sandbox/city/custody_history.py, employer_history.py): prisoners' rows appended to the justice
  feed, wage declarations appended to the tax bureau's, contributions to the office's, the ledger's
  months in custody taken out; drawn last, on people with no bill (the medical plants' included).

The steps below must keep their order: each stream's draws follow one another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fundx.core.city import City as CityFile
from fundx.core.codes import BUSINESS_STATUSES
from sandbox.city import truths as truth
from sandbox.city.accounts import Pools, plant_accounts
from sandbox.city.custody_history import Ground, plant_custody
from sandbox.city.deaths import DeathReports, Deaths, draw_death_sources, draw_deaths, report_deaths
from sandbox.city.draws import member
from sandbox.city.employer_history import plant_employers
from sandbox.city.feeds import DEFAULT_AS_OF, DEFAULT_SEED, FEEDS, HOSPITAL_DEATHS, WAGE_INCOME, Rows
from sandbox.city.invalid import UNREPAIRABLE, plant_invalid
from sandbox.city.medical import plant_medical
from sandbox.city.messiness import OLD_NUMBER_KIND, first_generation, mess_up, write_name_forms
from sandbox.city.office import (
    CONTRIBUTION_COLUMNS,
    CONTRIBUTION_RATE,
    SUBSIDY_COLUMNS,
    Contributions,
    DuplicateReceipts,
    Roll,
    Subsidies,
    draw_contributions,
    draw_duplicate_receipts,
    draw_roll,
    draw_subsidies,
    no_rows,
    pick_unemployed_contributing,
    roll_entries,
    roll_frame,
    share_accounts,
    stop_the_dead,
    suspend_in_custody,
)
from sandbox.city.office_feeds import ACCOUNT_CHANGES, ROLL, office_feeds, stop_late
from sandbox.city.payments import (
    Bills,
    FrequentPatients,
    Overbilled,
    add_frequent_patients,
    declare_wages,
    draw_bills,
    overbill,
)
from sandbox.city.place import SANDBOX_CITY, Place, load_place
from sandbox.city.population import NON_LOCAL_SHARE, People, make_people
from sandbox.city.registers import Prisoners, draw_businesses, draw_prisoners
from sandbox.city.text import day_number, month_of

BILLS = "medical_insurance.bills"
PRISONERS, BUSINESSES = "justice.prisoners", "market_regulation.businesses"


@dataclass
class City:
    """A generated city: the office's data (benefit roll, contributions, employer subsidies), every
    agency's rows, and the truths planted in them."""

    seed: int
    people: int
    as_of: date
    roll: pd.DataFrame
    feeds: dict[str, pd.DataFrame]
    truths: dict
    contributions: pd.DataFrame = field(default_factory=lambda: no_rows(CONTRIBUTION_COLUMNS))
    subsidies: pd.DataFrame = field(default_factory=lambda: no_rows(SUBSIDY_COLUMNS))
    #: the office's system as an agency: its five feeds (sandbox/city/office_feeds.py: OFFICE_FEEDS)
    office: dict[str, pd.DataFrame] = field(default_factory=dict)

    def write_truth(self, path: Path) -> None:
        """Write the truths as JSON (UTF-8, Chinese kept readable)."""
        Path(path).write_text(json.dumps(self.truths, ensure_ascii=False, indent=1), encoding="utf-8")


@dataclass(frozen=True)
class _Streams:
    """A city's random streams (see the module's docstring)."""

    main: np.random.Generator
    office: np.random.Generator
    hospital: np.random.Generator
    wages: np.random.Generator
    traits: np.random.Generator
    history: np.random.Generator
    accounts: np.random.Generator
    medical: np.random.Generator
    cases: np.random.Generator

    @classmethod
    def of(cls, seed: int) -> _Streams:
        def stream(key: int) -> np.random.Generator:
            return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, key])))

        return cls(np.random.Generator(np.random.PCG64(seed)), stream(99), stream(100), stream(101), stream(102),
                   stream(103), accounts=stream(105), medical=stream(106), cases=stream(104))


def generate_city(people: int = 10_000, seed: int = DEFAULT_SEED, as_of: date = DEFAULT_AS_OF, *,
                  city: str | CityFile = SANDBOX_CITY, non_local_share: float = NON_LOCAL_SHARE) -> City:
    """Build the synthetic city for a seed: the office's data, the eight feeds, and the planted truths.

    The office's data: ``roll`` (one row per person and scheme: ROLL_COLUMNS, months as YYYY-MM),
    ``contributions`` (employers' monthly contributions for employees, the 12 months before as_of's
    month: CONTRIBUTION_COLUMNS) and ``subsidies`` (employer subsidies: SUBSIDY_COLUMNS).

    ``truths`` (JSON-serialisable; identity numbers are the clean ones). The case lists are
    exactly the instances of the matching rules of docs/matching.md in the data the matching
    stage sees (the invalid rows quarantined, identity numbers normalised): planted, none natural.

    - ``dead_but_paid`` (paid_after_death): died before as_of, roll still active and paid after the
      death month; each with death_date, paid_through, months_after_death, monthly_amount, amount
      (months_after_death x monthly_amount) and ``known_to`` {feed: key} (at least one of the first
      three death feeds has the person, and the hospital when it notified the death; the latest date
      among the feeds is the true one).
    - ``prisoners_paid`` (paid_in_custody): 在押 for at least two months, roll still active
      (prisoner_id, admitted_on, monthly_amount; months = paid_through - admission month, capped at
      the sentence end's month if it is past; amount = months x monthly_amount).
    - ``shared_accounts`` (shared_account): one bank account receiving the benefits of 3-6 unrelated
      people (bank_account, id_numbers, amount: their monthly amounts summed).
    - ``duplicate_receipts`` (duplicate_receipt): a second active entry on a scheme the first
      excludes (id_number, schemes sorted, overlap_months of the two [start_month, paid_through],
      monthly_amounts {scheme: amount}, amount = overlap_months x the smaller monthly amount).
    - ``unemployed_contributing``: contributions paid in months of an active unemployment entry
      (id_number, months, monthly_amount, amount = len(months) x monthly_amount).
    - ``stopped_but_overpaid`` (paid_after_death, from the payment ledger: office_feeds.stop_late): an
      entry stopped in the month of death whose payments went on for 1-3 months first; only the
      office's feeds (City.office) show them, City.roll keeps the entry as stopped in time.
    - ``frequent_patients`` (frequent_visits): MIN_VISITS-23 bills admitted in one month (id_number,
      month, visits: all the person's bills admitted that month; most_in_30_days: the most in any 30 days,
      MIN_VISITS or more).
    - ``overbilled`` (bill_over_mean): bills at 1.6-3 x their diagnosis's typical cost, more than
      20 % above their peers' mean (the same diagnosis_code and setting, the bill left out: bill_id,
      diagnosis_code, setting inpatient|outpatient, total_amount).
    - ``frequent_across_months`` (frequent_visits), ``overbilled_at_hospital`` (bill_over_mean),
      ``costly_hospitals`` (hospital_over_mean: hospital_code, diagnosis_code, setting, bills),
      ``billed_after_death`` (bill_after_death), ``billed_in_custody`` (bill_in_custody),
      ``overlapping_stays`` (overlapping_stays): bill review's newer cases, from the medical stream, drawn
      last (sandbox/city/medical.py; each with id_number or bill_id, the bills, and the fund's amount);
      ``frequent_patients`` then also carry most_in_30_days. ``natural_stays_shortened`` and
      ``natural_custody_bills_removed`` count how the natural bills were made to hold none of these.
    - ``lookalikes``: cases each rule must NOT flag ({rule, kind, the rule's subject field}): 14 visits in
      30 days, a bill on the day of death, a bill on the day of admission to custody, two stays that touch,
      a hospital whose costs are high by its case mix only.
    - ``subsidised_deregistered`` (deregistered_subsidised): 注销 businesses subsidised in 1-6 months
      after their deregistration month (uscc, status, end_date, months, amount: those subsidies summed).
    - from the accounts' stream (sandbox/city/accounts.py), in the office's feeds only (City.office; City.roll
      and every other frame as they were): ``shared_accounts_history`` (shared_account: two unrelated people
      on one account by the ledger, kind two_people, stopped_member or couple_and_other; bank_account,
      id_numbers, months and amount: what the ledger paid the unrelated one who moved onto it), ``accounts_taken_over`` (shared_account: an
      entry changed to the account of someone dead or in custody; bank_account, id_number, former_id_number,
      event death|custody, event_date, changed_at, months, amount), ``duplicate_receipts_ended``
      (duplicate_receipt over the ledger, stopped since; id_number, kind, schemes, monthly_amounts, months,
      amount = months x the smaller) and ``unemployed_contributing_history`` (id_number, months,
      monthly_amount, amount, status); the roll feed's ``spouse_id_number`` names the planted couples.
    - ``lookalikes``: cases a rule must not flag ({rule, kind, the rule's subject field}): spouses on one
      account, a widow(er) on the late spouse's account, a new account of one's own (shared_account),
      unemployment ended the month before a pension (duplicate_receipt), benefit begun the month after
      the last contribution (unemployed_contributing).
    - ``released_paid`` (paid_in_custody, from the payment ledger: sandbox/city/custody_history.py):
      released prisoners (刑满释放, rows appended to the prisoners list) whose entry the ledger paid in
      the months after their admission month up to their release month (id_number, prisoner_id,
      custody_status, admitted_on, released_on, paid_months, amount: what was paid in them). Every other
      released prisoner on the roll is paid nothing inside their custody (the ledger's months taken out).
    - ``contributed_in_custody`` (contributions_in_custody): people contributing, admitted (在押) while
      their employer went on paying (id_number, prisoner_id, admitted_on, months after the admission
      month, amount: those contributions summed).
    - ``retired_in_custody``: every basic pension whose first month is inside a custody period the stage
      sees (the planted released ones, ``planted`` true, whose ledger paid nothing inside; and natural
      ones: prisoners on the roll whose pension began after their admission); id_number, start_month,
      months and amount: what the ledger paid on the entry.
    - ``deregistered_contributing``: ended businesses (注销/吊销) under whose code contributions were paid for
      1-2 months after the month they ended (uscc, status, end_date, id_numbers: the people contributed
      for, months, amount), rows appended to
      the office's contributions (City.office; City.contributions stays as drawn).
    - ``no_wage_declared`` (contributions_without_wage): every (person, employer) with 3 or more months
      contributed for, before as_of's last month, with no wage of the person declared by the employer in
      the same quarter among the declarations the stage sees (id_number, employer_uscc, months, amount,
      ``planted``: the planted ones, 3-6 months with no declaration at all; the others are natural: the
      employers declare about 92 % of the months and the contracts quarantine some declarations).
    - ``lookalikes``: cases that must not be flagged, {rule, kind, the rule's subject field, ...}:
      released_before_paid, released_suspended, suspended_on_admission (in custody, suspended in
      City.office's roll only), contributions_stopped_on_admission, retired_in_admission_month,
      contributions_until_end (an ended business's contributions up to the month it ended),
      two_months_undeclared, declared_quarterly (wages declared under each quarter's last month).
      Parole (假释) and 暂予监外执行 are planted neither way: the seeds do not say whether they may be paid.
    - ``single_source_deaths``: deaths known to exactly one of the four death feeds (DEATH_FEEDS, the
      hospital's notifications included: a death known to civil affairs and a hospital has two).
    - ``date_conflicts``: the same death with death dates 3-40 days apart in two feeds
      (dates and keys per feed, the hospital's too when it notified the death, always with the
      true date; the true death_date, days_apart).
    - ``near_dates``: the same death reported one day apart by two sources (the same fields,
      days_apart 1): not a conflict, the later date is the true one.
    - ``messy``: every cell made messy {feed, key, column, kind, value, clean}: the repairable quirks,
      the first-generation 15-digit numbers of paper-born registers (kind OLD_NUMBER_KIND: a trait of
      an old person's record, so possibly in a row a truth depends on) and the identity numbers no
      repair can make valid (kinds UNREPAIRABLE; value None when left empty); ``invalid_ids``: those
      unrepairable ones.
    - ``invalid``: every row planted invalid (about INVALID_RATE of each feed, see invalid_count):
      {feed, key (the row's key as it is in the frame), kind (INVALID_KINDS), column, rules (the
      sorted ids of every contract rule the row breaks, checked on as_of)}. Rules never planted, and
      why: NOT_PLANTED.
    - ``counts``: rows per feed, and roll (rows), deaths, prisoners, businesses, contributions,
      subsidies, issued_elsewhere (residents whose number was first issued outside the city),
      former_codes (locals under a code their district no longer uses), first_generation_rows,
      minority_names, bills_before_medical_plants (the bills the invalid rows were planted among),
      history_prisoner_rows and history_wage_rows (the clean rows appended by the history's plants, after
      the invalid ones were counted); ``deaths_unknown_to_any_source`` (to none of the four death feeds).

    ``city``: the city file (a shipped name, a path or a loaded fundx.core.city.City) the residents live
    in; ``non_local_share``: the share of them whose numbers were first issued in other provinces.

    Each list holds exactly what is in the frames, and no other row of the roll and feeds is an
    instance of its category. Messiness (but the first-generation numbers) and invalid rows never
    touch a row that a truth depends on, and no row is both messy and invalid.
    """
    if people < 1:
        raise ValueError("a city needs at least one person")
    if not 0 <= non_local_share <= 1:
        raise ValueError("non_local_share is a share: between 0 and 1")
    streams = _Streams.of(seed)
    rng, office = streams.main, streams.office
    as_of_days = day_number(as_of)
    this_month = month_of(np.array([as_of_days]))[0]
    last_paid = this_month - 1
    place = load_place(city)
    ppl = make_people(rng, people, as_of_days, "city", unique=True, place=place, extra=streams.traits,
                      non_local=non_local_share)
    age = (as_of_days - ppl.birth) / 365.2425
    ids = ppl.ids()
    id_text = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)

    # The year's events, from the main stream: deaths, the roll, who reports the deaths, prisoners,
    # shared accounts, bills and businesses.
    dead, death_day = draw_deaths(rng, age, as_of_days)
    alive = ~dead
    roll = draw_roll(rng, ppl, age, last_paid)
    deaths = draw_death_sources(rng, streams.traits, ppl, dead, death_day, roll.on, as_of_days)
    reports = report_deaths(rng, streams.hospital, ppl, deaths, as_of_days)
    still_paid = stop_the_dead(rng, roll, deaths, reports.n_known, last_paid)
    prisoners = draw_prisoners(rng, ppl, age, alive, roll.on, as_of_days)
    suspend_in_custody(roll, prisoners, last_paid)
    taken = np.zeros(people, dtype=bool)  # people a truth already depends on
    taken[deaths.pos] = True
    taken[prisoners.pos] = True
    groups = share_accounts(rng, roll, busy=taken.copy())
    for g in groups:
        taken[g] = True
    bills = draw_bills(rng, office, ppl, age, death_day, as_of_days)
    business, reps = draw_businesses(rng, ppl, age, alive, as_of_days)

    # The office's own data and the cases of the other rules, from the office's stream (the wages:
    # from their own).
    roll.start = np.minimum(roll.start, roll.paid_through)  # an entry stopped before it began: paid its one month
    first_month = this_month - 12  # contributions and subsidies: the 12 months before as_of's month
    dups = draw_duplicate_receipts(office, roll, taken, last_paid)
    taken[dups.pos] = True
    entries = roll_entries(roll, dups, last_paid)
    roll_rows = roll_frame(entries, len(roll.pos), ppl, ids, place)
    unemployed = pick_unemployed_contributing(office, roll, taken)
    taken[unemployed] = True
    in_prison = np.zeros(people, dtype=bool)
    in_prison[prisoners.pos] = True
    employable = alive & (age >= 18) & (age < 60) & ~in_prison
    contributions = draw_contributions(office, ppl, ids, employable, roll, entries, unemployed, business.frame,
                                       first_month)
    c = contributions.order
    wages, wage_person = declare_wages(
        streams.wages, ppl, contributions.person[c], contributions.month[c],
        contributions.amount[c] / CONTRIBUTION_RATE, contributions.employer[c], pa.array(business.frame["uscc"]),
        as_of_days)
    subsidies = draw_subsidies(office, business.frame, first_month, last_paid)
    frequent = add_frequent_patients(office, ppl, bills, alive & ~taken, this_month, as_of_days)
    over = overbill(office, bills, frequent.pos)

    drawn = _Drawn(place, ppl, id_text, deaths, reports, roll, still_paid, prisoners, groups, bills, business, reps,
                   dups, contributions, wages, wage_person, subsidies, frequent, over)
    truths: dict = {"city": place.name, "seed": seed, "people": people, "as_of": as_of.isoformat()}
    truths |= _truths(drawn, as_of_days, last_paid)  # read back from the frames before any mistake is planted
    feeds = _feeds(drawn)
    messy, invalid = _plant_mistakes(streams, feeds, drawn, as_of_days)
    truths["messy"] = messy
    truths["invalid_ids"] = [m for m in messy if m["kind"] in UNREPAIRABLE]
    truths["invalid"] = invalid
    truths["counts"] = {f: len(feeds[f][0]) for f in FEEDS} | _counts(drawn, roll_rows, messy)
    office_rows = office_feeds(streams.history, roll_rows, contributions.frame, subsidies.frame, as_of)
    in_time = _stopped_in_time(drawn, messy, invalid)
    truths["stopped_but_overpaid"] = stop_late(streams.history, office_rows, in_time, as_of)
    late = {t["id_number"] for t in truths["stopped_but_overpaid"]}
    pools = _pools(drawn, taken, [d for d in in_time if d["id_number"] not in late], messy, invalid)
    accounts = plant_accounts(streams.accounts, office_rows, pools, contributions.frame, as_of)
    truths["lookalikes"] = [*truths.get("lookalikes", []), *accounts.pop("lookalikes")]
    truths |= accounts
    feeds[BILLS] = (_plant_medical(streams.medical, drawn, feeds[BILLS][0], truths, messy, invalid, as_of_days),
                    feeds[BILLS][1])
    frames = {f: feeds[f][0] for f in FEEDS}
    _plant_history(streams.cases, drawn, age, alive, as_of, frames, office_rows, truths)
    return City(seed=seed, people=people, as_of=as_of, roll=roll_rows, feeds=frames, truths=truths,
                contributions=contributions.frame, subsidies=subsidies.frame, office=office_rows)


@dataclass
class _Drawn:
    """Everything drawn for a city, before the truths are read from it and mistakes planted in it."""

    place: Place
    ppl: People
    id_text: np.ndarray  # the identity numbers as Python strings
    deaths: Deaths
    reports: DeathReports
    roll: Roll
    still_paid: np.ndarray  # deaths still paid (indexes into deaths)
    prisoners: Prisoners
    groups: list[np.ndarray]  # the shared accounts' people
    bills: Bills
    business: Rows  # pos: each row's business, in reps
    reps: np.ndarray  # each business's representative
    dups: DuplicateReceipts
    contributions: Contributions
    wages: Rows
    wage_person: np.ndarray
    subsidies: Subsidies
    frequent: FrequentPatients
    over: Overbilled


def _truths(drawn: _Drawn, as_of_days: int, last_paid: int) -> dict:
    """The planted cases, one list per category (generate_city's docstring), in the truths file's order."""
    d, id_text, roll = drawn, drawn.id_text, drawn.roll
    deaths = truth.DeathTruths(d.deaths, d.reports, id_text)
    return {
        "dead_but_paid": deaths.dead_but_paid(roll, d.still_paid),
        "prisoners_paid": truth.prisoners_paid(d.prisoners, roll, id_text, as_of_days),
        "shared_accounts": truth.shared_accounts(d.groups, roll, id_text),
        "single_source_deaths": deaths.single_source(),
        "date_conflicts": deaths.date_conflicts(),
        "near_dates": deaths.near_dates(),
        "deaths_unknown_to_any_source": int((d.reports.n_sources == 0).sum()),
        "duplicate_receipts": truth.duplicate_receipts(d.dups, roll, id_text, last_paid),
        "unemployed_contributing": truth.unemployed_contributing(d.contributions, roll, id_text),
        "frequent_patients": truth.frequent_patients(d.frequent, id_text),
        "overbilled": truth.overbilled(d.bills.frame, d.over),
        "subsidised_deregistered": truth.subsidised_deregistered(d.business.frame, d.subsidies),
    }


def _feeds(drawn: _Drawn) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Each feed's frame and, per row, whether a truth depends on it (so no messiness or mistake goes there)."""
    d, deaths, reports = drawn, drawn.deaths, drawn.reports
    truth_people = np.zeros(d.ppl.n, dtype=bool)
    for at in (deaths.pos[d.still_paid], deaths.pos[deaths.conflict], deaths.pos[deaths.near],
               deaths.pos[reports.n_known == 1], d.prisoners.paid, *d.groups, d.dups.pos, d.contributions.unemployed,
               d.frequent.pos):  # the frequent patients' every bill: the count per month must stay as planted
        truth_people[at] = True
    bill_rows_kept = truth_people[d.bills.person]
    bill_rows_kept[d.over.rows] = True
    business_rows_kept = truth_people[d.reps[d.business.pos]]
    business_rows_kept[d.subsidies.deregistered] = True
    # The older feeds keep the protection they were drawn with (a death known to one of them and to
    # a hospital stays protected there); the hospital's rows also spare the deaths only it knows.
    hospital_people = truth_people.copy()
    hospital_people[deaths.pos[reports.n_sources == 1]] = True

    def about_deaths(feed: str, people: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        rows = reports.rows[feed]
        return rows.frame, people[deaths.pos[rows.pos]]

    return {
        "civil_affairs.deaths": about_deaths("civil_affairs.deaths", truth_people),
        "religious_affairs.deaths": about_deaths("religious_affairs.deaths", truth_people),
        "police.deaths": about_deaths("police.deaths", truth_people),
        "justice.prisoners": (d.prisoners.rows.frame, truth_people[d.prisoners.rows.pos]),
        "medical_insurance.bills": (d.bills.frame, bill_rows_kept),
        "market_regulation.businesses": (d.business.frame, business_rows_kept),
        HOSPITAL_DEATHS: about_deaths(HOSPITAL_DEATHS, hospital_people),
        WAGE_INCOME: (d.wages.frame, hospital_people[d.wage_person]),
    }


def _plant_mistakes(streams: _Streams, feeds: dict[str, tuple[pd.DataFrame, np.ndarray]], drawn: _Drawn,
                    as_of_days: int) -> tuple[list[dict], list[dict]]:
    """Messiness and invalid rows, in place, feed by feed, never in a protected row: (messy, invalid) records.

    Each feed draws from the stream its rows came from; the agencies' name forms from the traits' stream.
    """
    rows = drawn.reports.rows
    old_rows = {feed: rows[feed].extra.get("id15") for feed in ("civil_affairs.deaths", "religious_affairs.deaths")}
    streams_of = {HOSPITAL_DEATHS: streams.hospital, WAGE_INCOME: streams.wages}  # the older feeds: the main stream
    messy: list[dict] = []
    invalid: list[dict] = []
    for feed in FEEDS:
        frame, protected = feeds[feed]
        free = ~protected
        stream = streams_of.get(feed, streams.main)
        write_name_forms(streams.traits, feed, frame)
        messy.extend(first_generation(feed, frame, old_rows.get(feed), free))
        messy.extend(mess_up(stream, feed, frame, free))
        bad, bad_ids = plant_invalid(stream, feed, frame, free, as_of_days)
        messy.extend(bad_ids)
        invalid.extend(bad)
    return messy, invalid


def _stopped_in_time(drawn: _Drawn, messy: list[dict], invalid: list[dict]) -> list[dict]:
    """The dead on the roll whose one entry was stopped in the month of death, whose death is known to a
    source by one date (no conflict, no near date) and whose every death record is neither messy nor
    invalid: the people stop_late may plant an overpayment on (the stage sees their death as it is)."""
    deaths, reports, roll = drawn.deaths, drawn.reports, drawn.roll
    touched = {(m["feed"], str(m["key"])) for m in [*messy, *invalid]}
    death_month = deaths.month()
    entry = roll.index[deaths.pos]
    second = np.zeros(len(roll.on), dtype=bool)
    second[drawn.dups.pos] = True
    odd = np.zeros(deaths.count, dtype=bool)
    odd[np.asarray(deaths.conflict, dtype=np.int64)] = True
    odd[np.asarray(deaths.near, dtype=np.int64)] = True
    odd[np.asarray(drawn.still_paid, dtype=np.int64)] = True
    out = []
    keys = {feed: reports.keys(feed) for feed in reports.rows}
    for j in np.flatnonzero((entry >= 0) & (reports.n_known >= 1) & ~odd & ~second[deaths.pos]):
        ri = int(entry[j])
        if roll.status[ri] != 2 or roll.paid_through[ri] != death_month[j]:
            continue
        known = {f: str(keys[f][j]) for f in reports.rows if reports.known[f][j]}
        if any((f, k) in touched for f, k in known.items()):
            continue
        out.append({"id_number": str(drawn.id_text[deaths.pos[j]]), "death_date": truth._iso(deaths.true[j]),
                    "death_month": int(death_month[j]), "known_to": known})
    return out


def _plant_history(rng: np.random.Generator, drawn: _Drawn, age: np.ndarray, alive: np.ndarray, as_of: date,
                   frames: dict[str, pd.DataFrame], office: dict[str, pd.DataFrame], truths: dict) -> None:
    """The cases of the rules over history (custody, employers), in place: on people no truth already
    depends on, who have no bill and no account change (so no other family's rule sees them)."""
    d = drawn
    free = alive.copy()
    for taken in (d.deaths.pos, d.prisoners.pos, d.dups.pos, d.contributions.unemployed, d.frequent.pos, d.bills.person,
                  *d.groups):
        free[np.asarray(taken, dtype=np.int64)] = False
    pos_of = {str(t): i for i, t in enumerate(d.id_text)}
    named = set(office[ACCOUNT_CHANGES]["id_number"])
    named |= set(frames[BILLS]["id_number"].dropna().astype(str))  # the bills' people, the medical plants' too
    for name, cases in truths.items():
        if name not in ("messy", "invalid", "invalid_ids") and isinstance(cases, list):
            named |= {c["id_number"] for c in cases if "id_number" in c}
            named |= {i for c in cases for i in c.get("id_numbers", ())}
    free[[pos_of[i] for i in named if i in pos_of]] = False
    as_of_days = day_number(as_of)
    ground = Ground(rng, d.ppl, d.id_text, age, as_of, as_of_days, int(month_of(np.array([as_of_days]))[0]), free, pos_of)

    def quarantined(feed: str) -> set[str]:
        return {str(i["key"]) for i in truths["invalid"] if i["feed"] == feed}

    frames[PRISONERS], custody = plant_custody(ground, frames[PRISONERS], office, d.prisoners, quarantined(PRISONERS))
    business = frames[BUSINESSES]
    touched = {str(m["key"]) for m in [*truths["messy"], *truths["invalid"]] if m["feed"] == BUSINESSES}
    running = business.loc[business["status"].isin(BUSINESS_STATUSES[:2]) & ~business["uscc"].isin(touched), "uscc"]
    frames[WAGE_INCOME], employers = plant_employers(
        ground, office, business, frames[WAGE_INCOME], d.wage_person, touched, quarantined(WAGE_INCOME),
        {t["uscc"] for t in truths["subsidised_deregistered"]}, running.to_numpy(dtype=object))
    office[ROLL] = office[ROLL].sort_values(["updated_at", "entry_id"], kind="stable").reset_index(drop=True)
    lookalikes = [*custody.pop("lookalikes"), *employers.pop("lookalikes")]
    truths |= custody | employers
    truths.setdefault("lookalikes", []).extend(lookalikes)
    counts = truths["counts"]
    # the rows appended here are clean: the feeds' invalid rows were counted (invalid_count) before them
    counts["history_prisoner_rows"] = len(frames[PRISONERS]) - counts[PRISONERS]
    counts["history_wage_rows"] = len(frames[WAGE_INCOME]) - counts[WAGE_INCOME]
    counts |= {PRISONERS: len(frames[PRISONERS]), WAGE_INCOME: len(frames[WAGE_INCOME])}


def _pools(drawn: _Drawn, taken: np.ndarray, dead: list[dict], messy: list[dict], invalid: list[dict]) -> Pools:
    """Who the accounts' cases may be planted on (sandbox/city/accounts.py): the living in no truth, never
    prisoners nor frequent patients; the dead stopped in time; the prisoners in custody whose roll entry
    was suspended and whose row reaches the stage clean."""
    ppl, prisoners, roll = drawn.ppl, drawn.prisoners, drawn.roll
    free = ~taken  # the dead and the prisoners among them
    free[drawn.deaths.pos] = False
    free[prisoners.pos] = False
    free[drawn.frequent.pos] = False
    touched = {str(m["key"]) for m in [*messy, *invalid] if m["feed"] == "justice.prisoners"}
    frame = prisoners.rows.frame
    custody = []
    for i in np.flatnonzero((prisoners.status == 0) & ~prisoners.planted() & (roll.index[prisoners.pos] >= 0)):
        key = str(frame["prisoner_id"].iloc[i])
        if key in touched or int(prisoners.rows.pos[i]) != int(prisoners.pos[i]):
            continue
        end = frame["sentence_end"].iloc[i]
        custody.append({"id_number": str(drawn.id_text[prisoners.pos[i]]),
                        "admitted_on": str(frame["admitted_on"].iloc[i]),
                        "sentence_end": None if pd.isna(end) else str(end)})
    district_codes = drawn.place.codes[ppl.district]
    return Pools(free=free, male=np.asarray(ppl.male), birth=np.asarray(ppl.birth), id_text=drawn.id_text,
                 names=np.asarray(ppl.name.to_pylist(), dtype=object),
                 district=np.asarray([f"{int(c):06d}" for c in district_codes], dtype=object), dead=dead, custody=custody)


def _plant_medical(rng: np.random.Generator, drawn: _Drawn, frame: pd.DataFrame, truths: dict, messy: list[dict],
                   invalid: list[dict], as_of_days: int) -> pd.DataFrame:
    """Bill review's newer cases and look-alikes (sandbox/city/medical.py), into ``truths``; the new bills frame."""
    d = drawn
    invalid_keys = {str(i["key"]) for i in invalid if i["feed"] == BILLS}
    bad_prisoners = {str(i["key"]) for i in invalid if i["feed"] == "justice.prisoners"}
    prisoner_ids = d.prisoners.rows.frame["prisoner_id"].astype(str).to_numpy(dtype=object)
    busy = np.zeros(d.ppl.n, dtype=bool)
    for at in (d.prisoners.paid, *d.groups, d.dups.pos, d.contributions.unemployed, d.frequent.pos):
        busy[at] = True
    pos_of = {str(i): p for p, i in enumerate(d.id_text)}
    clean = [{"pos": pos_of[c["id_number"]], "death_date": c["death_date"]} for c in _clean_deaths(d, messy, invalid)]
    near = [{**n, "pos": pos_of[n["id_number"]]} for n in truths["near_dates"]]
    numbers = frame["bill_id"].astype(str).str.extract(r"^YB3301(\d{12})$")[0].dropna().astype(np.int64)
    key_start = max(d.bills.key_start + len(frame), int(numbers.max()) + 1 if len(numbers) else 0)
    out, found, lookalikes = plant_medical(
        rng, ppl=d.ppl, id_text=d.id_text, frame=frame, person=d.bills.person, key_start=key_start,
        invalid_keys=invalid_keys, busy=busy, prisoners=d.prisoners, deaths=d.deaths, clean_deaths=clean,
        near_dates=near, frequent=d.frequent, overbilled={t["bill_id"] for t in truths["overbilled"]},
        prisoner_received=~member(prisoner_ids, bad_prisoners), as_of_days=as_of_days)
    extra, most = found.pop("frequent_extra_visits"), found.pop("most_in_30_days")
    truths["frequent_patients"] = [{**t, "visits": t["visits"] + extra.get(t["id_number"], 0),
                                    "most_in_30_days": most[t["id_number"]]} for t in truths["frequent_patients"]]
    truths |= found
    truths["lookalikes"] = [*truths.get("lookalikes", []), *lookalikes]
    truths["counts"]["bills_before_medical_plants"] = len(frame)  # the rows the invalid ones were planted among
    truths["counts"][BILLS] = len(out)
    return out


def _clean_deaths(drawn: _Drawn, messy: list[dict], invalid: list[dict]) -> list[dict]:
    """The deaths a source reports by the true date alone (no conflict, no near date) whose every death record
    is neither messy nor invalid: the stage sees them as they are."""
    deaths, reports = drawn.deaths, drawn.reports
    touched = {(m["feed"], str(m["key"])) for m in [*messy, *invalid]}
    odd = np.zeros(deaths.count, dtype=bool)
    odd[np.asarray(deaths.conflict, dtype=np.int64)] = True
    odd[np.asarray(deaths.near, dtype=np.int64)] = True
    keys = {feed: reports.keys(feed) for feed in reports.rows}
    out = []
    for j in np.flatnonzero((reports.n_known >= 1) & ~odd):
        known = {f: str(keys[f][j]) for f in reports.rows if reports.known[f][j]}
        if not any((f, k) in touched for f, k in known.items()):
            out.append({"id_number": str(drawn.id_text[deaths.pos[j]]), "death_date": truth._iso(deaths.true[j])})
    return out


def _counts(drawn: _Drawn, roll: pd.DataFrame, messy: list[dict]) -> dict[str, int]:
    """The city's counts besides the feeds' rows: the office's tables, deaths, prisoners, businesses, and the
    population's traits."""
    place, ppl = drawn.place, drawn.ppl
    areas = ppl.area()
    in_city = areas // 100 == place.prefix
    return {
        "roll": len(roll), "deaths": drawn.deaths.count, "prisoners": len(drawn.prisoners.pos),
        "businesses": len(drawn.business.frame), "contributions": len(drawn.contributions.frame),
        "subsidies": len(drawn.subsidies.frame), "issued_elsewhere": int((~in_city).sum()),
        "former_codes": int((in_city & ~np.isin(areas, place.codes)).sum()),
        "first_generation_rows": sum(1 for m in messy if m["kind"] == OLD_NUMBER_KIND),
        "minority_names": int(pc.sum(pc.match_substring(ppl.name, "\u00b7")).as_py() or 0)}
