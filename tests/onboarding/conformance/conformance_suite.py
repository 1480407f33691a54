"""The connector conformance suite (onboarding/conformance/) as pytest tests: every feed, every check.

The feeds are the registry's (connectors/feeds/*.yaml, or FUNDX_FEEDS_DIR): a feed onboarded with its
config and contract is in the suite without a test file of its own. Each (feed, check) is its own
test (``test_conformance[police.deaths-paging]``), so a failure names both; the message names the
feed and what is wrong. A check that cannot apply to a feed is skipped with the written reason its
config gives (``conformance: skip: {paging: "why"}``); a feed the sandbox does not simulate is
skipped saying why. Pulls are shared between the checks of one feed, and one sandbox between every
conformance test of the session.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connectors.registry import registry
from fundx.core.settings import Settings
from onboarding.conformance import CHECKS, FAILED, SKIPPED, Context, run_check

#: people in the shared sandbox's city: every feed has rows, over several files and pages
PEOPLE = 5_000

_shared: dict[str, Any] = {}


def shared_sandbox(sandbox_factory: Any) -> Any:
    """The one sandbox of this test session for the conformance tests (started on first use)."""
    if "sandbox" not in _shared:
        _shared["sandbox"] = sandbox_factory("conformance", people=PEOPLE).start()
    return _shared["sandbox"]


def stop_shared_sandbox() -> None:
    sandbox = _shared.pop("sandbox", None)
    _shared.pop("contexts", None)
    if sandbox is not None:
        sandbox.stop()


@pytest.fixture(scope="session")
def conformance_sandbox(sandbox_factory: Any) -> Iterator[Any]:
    """The session's sandbox agencies for the conformance suite (endpoints in ``sandbox.env``, not os.environ)."""
    yield shared_sandbox(sandbox_factory)
    stop_shared_sandbox()


def fresh_context(feed: str, sandbox: Any, **options: Any) -> Context:
    """A context of its own for ``feed`` against ``sandbox`` (settings read from the environment now)."""
    return Context.for_sandbox(feed, sandbox, settings=Settings(), **options)


def context_for(feed: str, sandbox: Any) -> Context:
    """The context of ``feed`` shared by its checks in this session (so they share pulls)."""
    contexts = _shared.setdefault("contexts", {})
    if feed not in contexts:
        contexts[feed] = fresh_context(feed, sandbox)
    return contexts[feed]


def cases() -> list[Any]:
    """One case per configured feed (a broken config too: it fails) and check of the suite, a feed's checks together."""
    return [pytest.param(feed, check, id=f"{feed}-{check}") for feed in registry().all_names for check in CHECKS]


def run_case(feed: str, check: str, sandbox: Any) -> None:
    """One check of one feed against the sandbox: passes, or skips or fails with the suite's message."""
    broken = registry().broken.get(feed)
    if broken is not None:
        pytest.fail(f"{feed}: its config does not load: {broken}", pytrace=False)
    if feed in sandbox.not_simulated:
        pytest.skip(f"{feed} is not simulated by the sandbox: {sandbox.not_simulated[feed]}")
    result = run_check(check, context_for(feed, sandbox))
    if result.status == SKIPPED:
        pytest.skip(result.message)
    if result.status == FAILED:
        pytest.fail(result.message, pytrace=False)
