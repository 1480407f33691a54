"""Golden fingerprints of a small generated city and of streamed feeds: the sandbox's data, byte for byte.

The matching report's precision and recall, the contracts' planted invalid rows and the bench's cached
datasets all rest on the generator giving the same frames and truths for the same seed. A refactor of the
generator must leave every fingerprint below as it is. A change meant to alter the data (a new
trait, a new feed, a different draw) regenerates them — run this module's ``__main__`` and paste the
output over GOLDEN — and says in its commit why the data changed and that every stream it did not mean
to touch kept its fingerprint.

A fingerprint covers a frame's column names and dtypes, its row order and the repr of every value, so a
float that moves in its last digit, a row that swaps place or a column typed differently all show.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd
import pytest

from sandbox.city import FEEDS, generate_city, generate_feed
from sandbox.city.canary import plant_canary

PEOPLE, SEED = 1500, 42
FEED_ROWS, FEED_SEED, CHUNK_ROWS = 1200, 9, 500

#: what the generator gave when this test was written (sandbox/generator.py at 31ab6e6, before its split)
GOLDEN: dict[str, str] = {
    'city/canary': 'af04fc28ac81ca6f',
    'city/civil_affairs.deaths': '4195d955bb9a4943',
    'city/contributions': '21a195dd262f20fa',
    'city/health_commission.hospital_deaths': '3b09f558c018aedd',
    'city/justice.prisoners': '8ae4f6b6b5c64969',
    'city/market_regulation.businesses': '1425585ac1c5fbc4',
    # bills and truths: the medical stream [seed, 106] (issue 19, bill review), drawn last; nothing else moved
    'city/medical_insurance.bills': '22f9f11a73253aec',
    'city/police.deaths': '943de06eefcde41c',
    'city/religious_affairs.deaths': 'eb3638806c55f899',
    'city/roll': 'd461a718f9a44443',
    'city/subsidies': '0b4a2da205ee8b7a',
    'city/tax_bureau.wage_income': 'cad470c22bfc4f70',
    'city/truths': '1e6a670bd26adf7c',
    'feed/civil_affairs.deaths': 'b7d5bdcdfb932ec7',
    'feed/civil_affairs.deaths/invalid': '49a77a4c161d2c8e',
    'feed/health_commission.hospital_deaths': 'a4cf9fb0cfe501b3',
    'feed/health_commission.hospital_deaths/invalid': 'c82bd2c6f69e2852',
    'feed/justice.prisoners': 'c657b647ed6d0e2b',
    'feed/justice.prisoners/invalid': 'e861e167158f518a',
    'feed/market_regulation.businesses': '95358d30ba4f0c20',
    'feed/market_regulation.businesses/invalid': '025ec9ed6afd9272',
    'feed/medical_insurance.bills': '9eedd8d945e2e17b',
    'feed/medical_insurance.bills/invalid': 'ab3cd4212c71567e',
    'feed/police.deaths': '87605006ef8effaa',
    'feed/police.deaths/invalid': 'b33776d9ed029629',
    'feed/religious_affairs.deaths': '8306aaf695afbd78',
    'feed/religious_affairs.deaths/invalid': 'f2c135267be27f4b',
    'feed/tax_bureau.wage_income': '0246019149d95d37',
    'feed/tax_bureau.wage_income/invalid': 'e82f8a85dafc448f',
    # added with the office's feeds (issue 19): the office history's stream [seed, 103], nothing above moved
    'office/social_insurance.account_changes': '411664269e78a95b',
    'office/social_insurance.benefit_roll': 'e8119af2809838b6',
    'office/social_insurance.contributions': 'cac04e9a6b727d2a',
    'office/social_insurance.employer_subsidies': 'e70c55fc2e75d833',
    'office/social_insurance.payments': 'b4697ac2d440639e',
    'office/truths': '5d2917c851cab8e7',
    # the accounts' stream [seed, 105] (issue 19, shared_account, duplicate_receipt, unemployed_contributing over
    # history): planted in the office's feeds only; their roll (spouse_id_number, new entries), payments and
    # account changes moved, nothing else
    'accounts/truths': 'e53b96cf6e1570bb',
    # added with the rules over history (issue 19, custody and employers): the stream [seed, 104] appends
    # prisoners and wage declarations (clean, after the mistakes) and changes the office's roll, ledger and
    # contributions; justice.prisoners, tax_bureau.wage_income and city/truths (their counts) moved with it
    'history/truths': 'b4327da22a06d02f',
}


def fingerprint(frame: pd.DataFrame) -> str:
    """A short digest of a frame's columns, dtypes, row order and every value's repr."""
    digest = hashlib.sha256()
    digest.update(repr(list(frame.columns)).encode())
    digest.update(repr([str(t) for t in frame.dtypes]).encode())
    digest.update(repr(list(frame.index[:3])).encode() + str(len(frame)).encode())
    for column in frame.columns:
        digest.update(column.encode())
        digest.update("\x1f".join(repr(v) for v in frame[column].tolist()).encode())
    return digest.hexdigest()[:16]


def _json(value: Any) -> str:
    """A short digest of JSON-able data, its dicts' keys in their order (the truths file keeps it)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprints() -> dict[str, str]:
    """The fingerprint of everything GOLDEN pins, by name."""
    out: dict[str, str] = {}
    city = generate_city(PEOPLE, seed=SEED)
    for name, frame in (("roll", city.roll), ("contributions", city.contributions), ("subsidies", city.subsidies),
                        *city.feeds.items()):
        out[f"city/{name}"] = fingerprint(frame)
    for name, frame in city.office.items():  # the office's feeds: its own stream, drawn after everything above
        out[f"office/{name}"] = fingerprint(frame)
    # the truths drawn from the office history's stream come after the others: pinned apart, so the older stay as they were
    office_truths = ("stopped_but_overpaid",)
    # the accounts' stream [seed, 105] (sandbox/city/accounts.py): its truths and look-alikes, pinned apart too
    account_truths = ("shared_accounts_history", "accounts_taken_over", "duplicate_receipts_ended",
                      "unemployed_contributing_history")
    account_rules = ("shared_account", "duplicate_receipt", "unemployed_contributing")
    # the cases of the rules over history of custody and employers (the stream [seed, 104]), apart too
    history_truths = ("released_paid", "contributed_in_custody", "retired_in_custody", "deregistered_contributing",
                      "no_wage_declared")
    history_rules = ("paid_in_custody", "contributions_in_custody", "retired_in_custody", "deregistered_contributing",
                     "contributions_without_wage")
    later = (*office_truths, *account_truths, *history_truths, "lookalikes")
    out["city/truths"] = _json({k: v for k, v in city.truths.items() if k not in later})
    out["office/truths"] = _json({k: city.truths[k] for k in office_truths})
    out["accounts/truths"] = _json({k: city.truths[k] for k in account_truths}
                                   | {"lookalikes": [c for c in city.truths["lookalikes"] if c["rule"] in account_rules]})
    out["history/truths"] = _json({k: city.truths[k] for k in history_truths}
                                  | {"lookalikes": [c for c in city.truths["lookalikes"] if c["rule"] in history_rules]})
    out["city/canary"] = _json(plant_canary(city))
    for feed in FEEDS:
        invalid: list[dict] = []
        chunks = list(generate_feed(feed, FEED_ROWS, seed=FEED_SEED, chunk_rows=CHUNK_ROWS, invalid=invalid))
        out[f"feed/{feed}"] = _json([fingerprint(chunk) for chunk in chunks])
        out[f"feed/{feed}/invalid"] = _json(invalid)
    return out


@pytest.fixture(scope="module")
def found() -> dict[str, str]:
    return fingerprints()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_generated_data_is_what_it_was(name: str, found: dict[str, str]) -> None:
    assert found[name] == GOLDEN[name], f"{name}: the generated data changed (see this module's docstring)"


def test_golden_covers_every_frame_and_feed(found: dict[str, str]) -> None:
    assert sorted(found) == sorted(GOLDEN)


if __name__ == "__main__":  # print GOLDEN afresh (only for a change meant to alter the data)
    print("GOLDEN: dict[str, str] = {")
    for key, value in sorted(fingerprints().items()):
        print(f"    {key!r}: {value!r},")
    print("}")
