"""Matching speed and peak memory: death consolidation + two rules, next to a plain DuckDB join of the same data.

Synthetic pseudonymised inputs in the store's shapes (:data:`matching.rules.EMPTY`, plus the store's
``batch`` column): a benefit roll of ``roll`` rows (``person`` and ``account`` 16-byte tokens as
Arrow binary, which DuckDB reads as BLOB, as it reads the store), ``deaths`` rows over the three
death feeds (most people in one or two feeds, some dates disagreeing, some records delivered again
in a later batch), ``prisoners`` custody rows (在押/假释/暂予监外执行/刑满释放, some delivered again
with a new status). About 30 % of the dead are on the roll; 3 % of those are still paid after death,
5 % of the roll's people in custody are still paid: these are the planted suspects, and matching
must find exactly them.

Every run is a Python process of its own, on inputs read into its memory from Arrow IPC files that
another process made (making them is not timed); peak memory is the process's resident high-water
mark (VmHWM), inputs included. Cases:
- plain: DuckDB joining roll with deaths and roll with custody on ``person``, every joined row
  materialised to Arrow (nothing deduplicated, consolidated or aggregated);
- matching: ``rules.prepare`` (latest row per key, death consolidation) + ``rules.run_rules`` with
  paid_after_death and paid_in_custody, materialised to Arrow;
- all the rules over the same roll, deaths and custody (bills, businesses, contributions and
  subsidies empty), once.
Plain and matching alternate ``repeats`` times and the best run of each counts. Goal (the matching
issue): <= 10 s and <= 1.5 x the plain join for 10,000,000 roll rows, 1,000,000 deaths and 200,000
prisoners, on the 2-core machine.

    python -m bench.matching_bench [--roll N] [--deaths N] [--prisoners N] [--repeats N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fundx.core import codes

MIB = 2**20
ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 10.0
GOAL_RATIO = 1.5
NIGHT = date(2026, 11, 23)
TABLES = ("roll", "deaths", "custody")
TWO_RULES = ["paid_after_death", "paid_in_custody"]

AREAS = ("330102", "330105", "330106", "330108", "330109", "330110", "330111", "330112", "330113", "330114",
         "330122", "330127", "330182", "330183")
BENEFITS = codes.SCHEMES
BENEFIT_SHARE = (0.55, 0.25, 0.08, 0.06, 0.06)
AMOUNT_RANGE = ((2500.0, 6000.0), (150.0, 400.0), (1500.0, 2000.0), (800.0, 1500.0), (300.0, 1000.0))
ROLL_STATUS = codes.ROLL_STATUSES
DEATH_FEEDS = (("civil_affairs.deaths", "MZ3301"), ("police.deaths", "HKZX3301"),
               ("religious_affairs.deaths", "ZJ3301"))
CUSTODY = ("在押", "假释", "暂予监外执行", "刑满释放")
CUSTODY_SHARE = (0.40, 0.12, 0.08, 0.40)

#: the baseline: the same joins on person, every joined row materialised, nothing consolidated or aggregated
PLAIN_DEATHS = ("SELECT r.*, d.feed, d.record_key, d.death_date, d.received_at "
                "FROM roll_in r JOIN deaths_in d ON r.person = d.person")
PLAIN_CUSTODY = ("SELECT r.*, c.record_key, c.custody_status, c.admitted_on, c.sentence_end, c.received_at "
                 "FROM roll_in r JOIN custody_in c ON r.person = c.person")


# --- synthetic inputs --------------------------------------------------------------------------------


def _day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def _month_of_days(days: np.ndarray) -> np.ndarray:
    """Day numbers -> month numbers (year * 12 + month - 1), as the store keeps months."""
    months = np.asarray(days, dtype="datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return (months + 1970 * 12).astype(np.int32)


def _month_no(d: date) -> int:
    return d.year * 12 + d.month - 1


CURRENT = _month_no(NIGHT)  # the roll's last paid month on the night


def _strings(matrix: np.ndarray) -> pa.Array:
    """An (n, width) uint8 matrix of ASCII -> an Arrow string array of n values of that width, without Python."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(np.ascontiguousarray(matrix, dtype=np.uint8))])


def _tokens(matrix: np.ndarray) -> pa.Array:
    """An (n, 16) uint8 matrix -> Arrow binary (what DuckDB gives for a BLOB column, and the store holds)."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(np.ascontiguousarray(matrix, dtype=np.uint8))])


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    pows = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (np.asarray(values, dtype=np.int64)[:, None] // pows % 10 + 48).astype(np.uint8)


def _keys(prefix: str, seq: np.ndarray) -> pa.Array:
    """prefix + 10-digit zero-padded sequence numbers, as the agencies' record keys look."""
    head = np.frombuffer(prefix.encode(), np.uint8)
    return _strings(np.hstack([np.broadcast_to(head, (len(seq), len(head))), _digits(seq, 10)]))


def _pick(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(np.asarray(index, dtype=np.int32)))


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def _batches(feed: np.ndarray, day: np.ndarray, feeds: tuple[str, ...]) -> tuple[pa.Array, pa.Array]:
    """The store's ``batch`` and ``received_at`` of rows received on ``day`` (a batch per feed and night)."""
    codes, inverse = np.unique(np.asarray(feed, np.int64) * 1_000_000 + day, return_inverse=True)
    names = []
    for code in codes.tolist():
        f, d = divmod(code, 1_000_000)
        start = date(1970, 1, 1) + timedelta(days=d - 1)
        name = f"{feeds[f]}-{start:%Y%m%d}T000000-{start + timedelta(days=1):%Y%m%d}T000000"
        names.append(f"{name}-{hashlib.sha256(name.encode()).hexdigest()[:12]}")
    # received at 02:00 Asia/Shanghai on the day = 18:00 UTC the day before
    micros = (np.asarray(day, np.int64) * 86_400 - 6 * 3_600) * 1_000_000
    return (_pick(tuple(names), inverse.reshape(-1)),
            pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")))


def _masked(area: np.ndarray, last4: np.ndarray) -> np.ndarray:
    """``330105********123X`` rows (id_masked) from area indexes and the last four characters."""
    out = np.empty((len(area), 18), np.uint8)
    out[:, :6] = np.frombuffer("".join(AREAS).encode(), np.uint8).reshape(len(AREAS), 6)[area]
    out[:, 6:14] = ord("*")
    out[:, 14:] = last4
    return out


def _choose(rng: np.random.Generator, pool: np.ndarray, share: float) -> np.ndarray:
    """share of pool (at least one when the pool is not empty), without repeats."""
    if not len(pool):
        return pool
    return rng.choice(pool, max(1, round(share * len(pool))), replace=False)


def make_inputs(roll: int, deaths: int, prisoners: int,
                seed: int = 20261123) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """The three tables (Arrow, in the store's columns) and the number of suspects planted per rule."""
    rng = np.random.default_rng(seed)
    night = _day(NIGHT)
    first_day, month_start = _day(date(2021, 1, 1)), _day(date(NIGHT.year, NIGHT.month, 1))

    # people: the roll's, then the dead and the prisoners who are not on it
    roll_people = max(2, round(roll / 1.05))
    dead_people = max(1, round(deaths * 0.98 / 1.7))
    dead_on_roll = min(round(dead_people * 0.30), roll_people // 2)
    prisoner_people = max(1, round(prisoners * 0.96))
    prisoners_on_roll = min(round(prisoner_people * 0.40), roll_people - dead_on_roll)
    off_dead, off_prisoners = dead_people - dead_on_roll, prisoner_people - prisoners_on_roll
    total = roll_people + off_dead + off_prisoners
    token = np.frombuffer(rng.bytes(16 * total), np.uint8).reshape(total, 16)
    area = rng.integers(0, len(AREAS), total, dtype=np.int16)
    last4 = rng.integers(48, 58, (total, 4), dtype=np.uint8)
    last4[rng.random(total) < 1 / 11, 3] = ord("X")
    order = rng.permutation(roll_people)
    dead = np.concatenate([order[:dead_on_roll], np.arange(roll_people, roll_people + off_dead)])
    prisoner = np.concatenate([order[dead_on_roll:dead_on_roll + prisoners_on_roll],
                               np.arange(roll_people + off_dead, total)])
    del order

    # the roll: one entry per person, a second benefit for about 5 % (3 % of those on an exclusive scheme)
    extra = roll - roll_people
    person = np.concatenate([np.arange(roll_people), rng.integers(0, roll_people, extra)])
    benefit = np.empty(roll, np.int8)
    benefit[:roll_people] = rng.choice(len(BENEFITS), roll_people, p=BENEFIT_SHARE)
    first = benefit[person[roll_people:]]
    second = np.where(rng.random(extra) < 0.5, 3, 4)
    second = np.where(second == first, 7 - second, second)
    exclusive = rng.random(extra) < 0.03
    second[exclusive] = np.where(first[exclusive] == 0, 1, 0)
    benefit[roll_people:] = second
    lo, hi = (np.array(x)[benefit] for x in zip(*AMOUNT_RANGE))
    amount = np.round(lo + rng.random(roll) * (hi - lo), 2)
    status = rng.choice(3, roll, p=(0.88, 0.04, 0.08)).astype(np.int8)
    start = rng.integers(_month_no(date(2000, 1, 1)), CURRENT + 1, roll).astype(np.int32)
    earlier_paid = start + (rng.random(roll) * (CURRENT - start)).astype(np.int32)
    paid = np.where(status == 0, CURRENT, earlier_paid).astype(np.int32)
    del earlier_paid
    account = np.frombuffer(rng.bytes(16 * roll), np.uint8).reshape(roll, 16).copy()
    account_masked = np.empty((roll, 19), np.uint8)
    account_masked[:, :4] = np.frombuffer(b"6222", np.uint8)
    account_masked[:, 4:15] = ord("*")
    account_masked[:, 15:] = rng.integers(48, 58, (roll, 4), dtype=np.uint8)
    groups = max(1, roll // 2500)  # 3 to 6 people's benefits paid into one account
    members = rng.choice(roll_people, min(roll_people, groups * 6), replace=False)
    for size in (3, 4, 5, 6):
        chunk = members[(size - 3) * groups * 6 // 4:(size - 2) * groups * 6 // 4]
        chunk = chunk[: len(chunk) // size * size].reshape(-1, size)
        account[chunk.reshape(-1)] = np.repeat(account[chunk[:, 0]], size, axis=0)
        account_masked[chunk.reshape(-1)] = np.repeat(account_masked[chunk[:, 0]], size, axis=0)

    # the dead: a death day per person; 3 % of those on the roll are still paid (death before this month)
    death_day = rng.integers(first_day, night - 2, dead_people)
    planted_dead = _choose(rng, np.arange(dead_on_roll), 0.03)
    death_day[planted_dead] = rng.integers(first_day, month_start - 7, len(planted_dead))
    death_month = np.full(roll_people, -1, np.int32)
    death_month[dead[:dead_on_roll]] = _month_of_days(death_day[:dead_on_roll])
    still_paid = np.zeros(roll_people, bool)
    still_paid[dead[planted_dead]] = True
    dm, sp = death_month[person], still_paid[person]
    stop = (dm >= 0) & ~sp
    status[stop], paid[stop] = 2, np.minimum(paid[stop], dm[stop])
    status[sp], paid[sp] = 0, CURRENT
    start = np.minimum(start, paid)
    del dm, sp, stop, death_month, still_paid

    # death rows: each dead person in 1 (45 %), 2 (40 %) or 3 (15 %) feeds; some dates disagree
    per = rng.choice((1, 2, 3), dead_people, p=(0.45, 0.40, 0.15))
    feeds_of = np.argsort(rng.random((dead_people, 3)), axis=1)
    take = np.arange(3)[None, :] < per[:, None]
    d_feed = feeds_of[take].astype(np.int8)
    d_who = np.repeat(np.arange(dead_people), per)
    d_rank = np.broadcast_to(np.arange(3), (dead_people, 3))[take]
    d_day = death_day[d_who].copy()
    later = d_rank == per[d_who] - 1
    # an earlier date in one source: 4 % a conflict (> 2 days), 3 % within 2 days
    off = later & (per[d_who] > 1) & (rng.random(len(d_who)) < 0.07)
    d_day[off] -= np.where(rng.random(off.sum()) < 4 / 7, rng.integers(3, 40, off.sum()), rng.integers(1, 3, off.sum()))
    if len(d_who) > deaths:  # drop whole people from the end (the dead off the roll come last)
        keep = d_who < np.searchsorted(np.cumsum(per), deaths, side="right")
        d_feed, d_who, d_day = d_feed[keep], d_who[keep], d_day[keep]
    base = len(d_who)
    d_seq = np.zeros(base, np.int64)
    for f in range(3):
        mine = d_feed == f
        d_seq[mine] = np.arange(1, mine.sum() + 1)
    d_recv = np.minimum(d_day + rng.integers(1, 20, base), night - 2)
    # delivered again in a later batch (once), 30 % with the date corrected a day later
    again = rng.choice(base, min(base, deaths - base), replace=False)
    d_feed = np.concatenate([d_feed, d_feed[again]])
    d_who = np.concatenate([d_who, d_who[again]])
    d_seq = np.concatenate([d_seq, d_seq[again]])
    d_day = np.concatenate([d_day, d_day[again] + (rng.random(len(again)) < 0.3)])
    d_recv = np.concatenate([d_recv, np.minimum(d_recv[again] + rng.integers(1, 60, len(again)), night - 1)])
    d_person = dead[d_who]
    keys = pa.chunked_array([_keys(DEATH_FEEDS[f][1], d_seq[d_feed == f]) for f in range(3)]).combine_chunks()
    by_feed = np.argsort(d_feed, kind="stable")
    unsort = np.empty_like(by_feed)
    unsort[by_feed] = np.arange(len(by_feed))
    batch, received = _batches(d_feed, d_recv, tuple(f for f, _ in DEATH_FEEDS))
    deaths_t = pa.table({
        "feed": _pick(tuple(f for f, _ in DEATH_FEEDS), d_feed), "record_key": keys.take(pa.array(unsort)),
        "person": _tokens(token[d_person]), "id_masked": _strings(_masked(area[d_person], last4[d_person])),
        "area": _pick(AREAS, area[d_person]), "death_date": _dates(d_day), "batch": batch, "received_at": received,
        "name_token": _tokens(token[d_person][:, ::-1].copy()),  # one name per person, whichever source
    }).take(pa.array(np.lexsort((d_feed, d_recv))))  # in the order the batches arrived

    # custody: a status per prisoner; 5 % of those in custody (在押) and on the roll are still paid
    c_status = rng.choice(4, prisoner_people, p=CUSTODY_SHARE).astype(np.int8)
    admitted = rng.integers(_day(date(2016, 1, 1)), night - 5, prisoner_people)
    s_start = admitted - rng.integers(0, 180, prisoner_people)
    s_end = s_start + rng.integers(180, 5000, prisoner_people)
    held = c_status == 0
    keep_past = rng.random(prisoner_people) < 0.01  # the sentence ended, the status was not updated yet
    ahead = held & ~keep_past
    s_end[ahead] = np.maximum(s_end[ahead], night + rng.integers(30, 3000, ahead.sum()))
    s_end[held] = np.maximum(s_end[held], admitted[held] + 70)
    released = c_status == 3
    s_end[released] = np.minimum(s_end[released], night - 1)
    admitted[released] = np.minimum(admitted[released], s_end[released] - 30)
    s_start = np.minimum(s_start, admitted)
    on_roll_held = np.flatnonzero(held[:prisoners_on_roll] & (_month_of_days(admitted[:prisoners_on_roll]) < CURRENT))
    planted_held = _choose(rng, on_roll_held, 0.05)
    in_custody = np.zeros(roll_people, np.int32)  # admission month + 1 of the roll's people in custody
    in_custody[prisoner[:prisoners_on_roll][held[:prisoners_on_roll]]] = (
        _month_of_days(admitted[:prisoners_on_roll][held[:prisoners_on_roll]]) + 1)
    paid_held = np.zeros(roll_people, bool)
    paid_held[prisoner[planted_held]] = True
    ic, ph = in_custody[person] - 1, paid_held[person]
    hold = (ic >= 0) & ~ph
    status[hold], paid[hold] = 1, np.minimum(paid[hold], ic[hold])
    status[ph], paid[ph] = 0, CURRENT
    start = np.minimum(start, paid)
    del ic, ph, hold, in_custody, paid_held
    c_recv = np.minimum(admitted + rng.integers(1, 15, prisoner_people), night - 2)
    c_seq = np.arange(1, prisoner_people + 1)
    more = prisoners - prisoner_people
    # sent again later with the current status: the first row said 在押
    resent = rng.choice(prisoner_people, min(prisoner_people, more // 2), replace=False)
    earlier = rng.integers(0, prisoner_people, more - len(resent))  # an earlier, finished sentence
    first_status = c_status.copy()
    first_status[resent] = 0
    e_admitted = admitted[earlier] - rng.integers(400, 3000, len(earlier))
    e_end = e_admitted + rng.integers(100, 365, len(earlier))
    who = np.concatenate([np.arange(prisoner_people), resent, earlier])
    c_person = prisoner[who]
    rows_status = np.concatenate([first_status, c_status[resent], np.full(len(earlier), 3, np.int8)])
    rows_seq = np.concatenate([c_seq, c_seq[resent], prisoner_people + 1 + np.arange(len(earlier))])
    rows_admitted = np.concatenate([admitted, admitted[resent], e_admitted])
    rows_start = np.concatenate([s_start, s_start[resent], e_admitted])
    rows_end = np.concatenate([s_end, s_end[resent], e_end])
    rows_recv = np.concatenate([c_recv, np.minimum(c_recv[resent] + rng.integers(1, 60, len(resent)), night - 1),
                                np.minimum(e_end + rng.integers(1, 15, len(earlier)), night - 2)])
    c_batch, c_received = _batches(np.zeros(len(who), np.int8), rows_recv, ("justice.prisoners",))
    custody_t = pa.table({
        "record_key": _keys("ZF3301", rows_seq), "person": _tokens(token[c_person]),
        "id_masked": _strings(_masked(area[c_person], last4[c_person])), "area": _pick(AREAS, area[c_person]),
        "custody_status": _pick(CUSTODY, rows_status), "admitted_on": _dates(rows_admitted),
        "sentence_start": _dates(rows_start), "sentence_end": _dates(rows_end), "batch": c_batch,
        "received_at": c_received,
    }).take(pa.array(np.argsort(rows_recv, kind="stable")))

    # the roll as the office's feed leaves it in the store: an entry key, one batch received the night before
    roll_batch, roll_received = _batches(np.zeros(roll, np.int64), np.full(roll, night - 1), ("social_insurance.benefit_roll",))
    roll_t = pa.table({
        "record_key": _keys("RE", np.arange(1, roll + 1)),
        "person": _tokens(token[person]), "id_masked": _strings(_masked(area[person], last4[person])),
        "area": _pick(AREAS, area[person]), "spouse": pa.nulls(roll, pa.binary()), "benefit_type": _pick(BENEFITS, benefit),
        "monthly_amount": pa.array(amount), "account": _tokens(account), "account_masked": _strings(account_masked),
        "status": _pick(ROLL_STATUS, status), "start_month": pa.array(start, pa.int32()),
        "stop_month": pa.array(np.where(status == 0, 0, paid + 1), pa.int32(), mask=status == 0),
        "paid_through": pa.array(paid, pa.int32()), "batch": roll_batch, "received_at": roll_received,
        "district_given": pa.array(np.ones(roll, bool)),  # the office names the paying district of every entry
    })
    planted = {"paid_after_death": len(planted_dead), "paid_in_custody": len(planted_held)}
    return {"roll": roll_t, "deaths": deaths_t, "custody": custody_t}, planted


# --- the parent: make the inputs once, measure each case in its own process --------------------------


def run(roll: int = 10_000_000, deaths: int = 1_000_000, prisoners: int = 200_000, *, repeats: int = 3,
        verbose: bool = True) -> dict[str, Any]:
    """Time the plain join, matching (two rules) and all the rules; returns the figures, prints them if verbose.

    Every run is a process of its own: the inputs are made by one (so that this process stays small), then
    plain and matching alternate ``repeats`` times (a neighbour's load falls on both alike) and the best run
    of each counts; all the rules run once.
    """
    with tempfile.TemporaryDirectory(prefix="fundx-matching-bench-") as tmp:
        made = _child({"mode": "make", "folder": tmp, "roll": roll, "deaths": deaths, "prisoners": prisoners})
        plain: list[dict[str, Any]] = []
        matching: list[dict[str, Any]] = []
        for _ in range(repeats):
            plain.append(_child({"mode": "plain", "folder": tmp}))
            matching.append(_child({"mode": "matching", "folder": tmp}))
        everything = _child({"mode": "all", "folder": tmp})
    best_plain = min(plain, key=lambda r: r["seconds"])
    best = min(matching, key=lambda r: r["seconds"])
    ratio = best["seconds"] / best_plain["seconds"]
    planted = made["planted"]
    result = {
        "roll_rows": roll, "death_rows": deaths, "custody_rows": prisoners, "inputs_MiB": round(made["inputs_MiB"], 1),
        "make_inputs_seconds": round(made["seconds"], 1), "repeats": repeats, "duckdb_threads": best["threads"],
        "person_type": best["person_type"],
        "plain_seconds": round(best_plain["seconds"], 3), "plain_runs": [round(r["seconds"], 3) for r in plain],
        "plain_rows": best_plain["rows"], "plain_peak_MiB": round(max(r["peak_MiB"] for r in plain)),
        "inputs_rss_MiB": round(best["inputs_rss_MiB"]),
        "matching_seconds": round(best["seconds"], 3), "matching_runs": [round(r["seconds"], 3) for r in matching],
        "matching_peak_MiB": round(max(r["peak_MiB"] for r in matching)),
        "ratio": round(ratio, 2),
        "plain_cpu_seconds": round(min(r["cpu_seconds"] for r in plain), 2),
        "matching_cpu_seconds": round(min(r["cpu_seconds"] for r in matching), 2),
        "cpu_ratio": round(min(r["cpu_seconds"] for r in matching) / min(r["cpu_seconds"] for r in plain), 2),
        "suspects": best["suspects"], "planted": planted,
        "found_planted": all(best["suspects"].get(r, 0) == n for r, n in planted.items()),
        "goal_met": best["seconds"] <= GOAL_SECONDS and ratio <= GOAL_RATIO,
        "all_rules_seconds": round(everything["seconds"], 3),
        "all_rules_cpu_seconds": round(everything["cpu_seconds"], 2),
        "all_rules_peak_MiB": round(everything["peak_MiB"]),
        "all_rules_suspects": everything["suspects"],
    }
    if verbose:
        _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    goal = "PASS" if r["goal_met"] else "OVER GOAL"
    found = " + ".join(f"{r['suspects'].get(k, 0):,}" for k in TWO_RULES)
    planted = " + ".join(f"{r['planted'][k]:,}" for k in TWO_RULES)
    runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"  inputs {r['inputs_MiB']:,.0f} MiB in Arrow, {r['inputs_rss_MiB']:,} MiB resident once read (made in "
          f"{r['make_inputs_seconds']:.0f} s, not timed); DuckDB threads {r['duckdb_threads']}; best of "
          f"{r['repeats']}, every run in its own process; peak = the process's resident high-water mark")
    print(f"  plain join (roll x deaths, roll x custody on person -> Arrow, {r['plain_rows']:,} rows): "
          f"{r['plain_seconds']:.2f} s (runs {runs(r['plain_runs'])}), peak {r['plain_peak_MiB']:,} MiB")
    print(f"  matching (prepare + paid_after_death + paid_in_custody -> Arrow): {r['matching_seconds']:.2f} s "
          f"(runs {runs(r['matching_runs'])}) = {r['ratio']:.2f} x the plain join, "
          f"peak {r['matching_peak_MiB']:,} MiB; "
          f"suspects {found} (planted {planted}: {'all found' if r['found_planted'] else 'NOT THE PLANTED ONES'})")
    print(f"  goal <= {GOAL_SECONDS:.0f} s and <= {GOAL_RATIO} x the plain join: {goal}  (CPU time, less sensitive "
          f"to a busy machine: matching {r['matching_cpu_seconds']:.1f} s, plain {r['plain_cpu_seconds']:.1f} s, "
          f"{r['cpu_ratio']:.2f} x)")
    others = ", ".join(f"{k} {v:,}" for k, v in sorted(r["all_rules_suspects"].items()))
    print(f"  every rule (bills, businesses, contributions, subsidies, payments empty), once: "
          f"{r['all_rules_seconds']:.2f} s, peak {r['all_rules_peak_MiB']:,} MiB; suspects: {others or 'none'}")


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.matching_bench", "--child", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"matching bench child {spec['mode']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- inside a child process --------------------------------------------------------------------------


def _status(field: str) -> int:
    """VmRSS (resident now) or VmHWM (resident high-water mark) of this process, in bytes.

    Not ru_maxrss: Linux carries the parent's resident set over a (v)fork + exec into the child's
    ru_maxrss, so a child of a big parent (pytest, `make bench` after the other benchmarks) would
    report the parent's size. VmHWM is this process's own.
    """
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _cpu() -> float:
    """User + system CPU seconds of this process, every thread (DuckDB's too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _make(spec: dict[str, Any]) -> dict[str, Any]:
    began = time.perf_counter()
    tables, planted = make_inputs(spec["roll"], spec["deaths"], spec["prisoners"])
    seconds = time.perf_counter() - began
    for name, table in tables.items():
        path = str(Path(spec["folder"]) / f"{name}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
    return {"planted": planted, "seconds": seconds, "inputs_MiB": sum(t.nbytes for t in tables.values()) / MIB}


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed run of one case on the inputs read into this process's memory."""
    import duckdb

    from matching import rules

    folder, mode = Path(spec["folder"]), spec["mode"]
    tables = {}
    for name in TABLES:
        with pa.OSFile(str(folder / f"{name}.arrow"), "rb") as source:  # read into memory, not mapped
            tables[name] = pa.ipc.open_file(source).read_all()
    out: dict[str, Any] = {"inputs_rss_MiB": _status("VmRSS") / MIB}
    con = duckdb.connect()
    began, cpu = time.perf_counter(), _cpu()
    if mode == "plain":
        for name, table in tables.items():
            con.register(f"{name}_in", table)
        out["rows"] = con.sql(PLAIN_DEATHS).to_arrow_table().num_rows + con.sql(PLAIN_CUSTODY).to_arrow_table().num_rows
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - began, _cpu() - cpu
    else:
        params = rules.parse_params(None)
        rules.prepare(con, rules.Inputs(dict(tables)), params)
        found = rules.run_rules(con, params, NIGHT, rules=TWO_RULES if mode == "matching" else None)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - began, _cpu() - cpu
        counts = found.column("rule").value_counts().to_pylist()
        out["suspects"] = {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}
        out["threads"] = int(con.sql("SELECT current_setting('threads')").fetchall()[0][0])
        out["person_type"] = con.sql("SELECT typeof(person) FROM roll LIMIT 1").fetchall()[0][0]
    con.close()
    return {**out, "peak_MiB": _status("VmHWM") / MIB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.matching_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--roll", type=int, default=10_000_000, help="benefit roll rows")
    parser.add_argument("--deaths", type=int, default=1_000_000, help="death rows over the three feeds")
    parser.add_argument("--prisoners", type=int, default=200_000, help="custody rows")
    parser.add_argument("--repeats", type=int, default=3, help="runs of plain and matching (the best counts)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(_make(spec) if spec["mode"] == "make" else _measure(spec)))
        return 0
    print(f"matching: {args.roll:,} roll rows, {args.deaths:,} death rows, {args.prisoners:,} custody rows")
    run(args.roll, args.deaths, args.prisoners, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
