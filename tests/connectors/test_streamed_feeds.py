"""The feeds whose rows grow with a province's people are streamed: read, checked and sealed in chunks.

A province of 10 million people (docs/capacity.md: The province-scale night) sends about 15 million
bills a year, 58 million months of the office's payment ledger, 22 million contributions and 18
million wage declarations, and a roll of 5 million entries. Read whole, a feed holds all of its rows
in memory at once — about 0.5 KB a row for the ledger (1,168,104 rows: 868 MiB read whole against 476
MiB streamed, the warm process 300 MiB; docs/capacity.md), 28 GB at a province's size; streamed it
holds a chunk. That a
streamed run delivers exactly the whole run's batch is tests/exchange/test_stream.py's.
"""

from __future__ import annotations

import pytest

from connectors import load_feed

PROVINCE_SIZED = ("medical_insurance.bills", "social_insurance.payments", "social_insurance.contributions",
                  "social_insurance.benefit_roll", "tax_bureau.wage_income")


@pytest.mark.parametrize("feed", PROVINCE_SIZED)
def test_a_feed_that_grows_with_the_province_is_streamed(feed):
    assert load_feed(feed).stream, f"{feed}: read whole, a province's night holds all its rows in memory"
