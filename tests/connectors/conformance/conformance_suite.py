"""The connector conformance suite (onboarding/conformance.py) as pytest tests, one per check.

A feed's test file is these lines (the sandbox is shared by every conformance file of the session):

    from conformance_suite import conformance_tests

    globals().update(conformance_tests("police.deaths"))

and, when a check cannot apply to the feed, the written reason for skipping it:

    globals().update(conformance_tests("x.y", skip={"paging": "the agency sends one file, no pages"}))

Each check is its own test (``test_connection``, ``test_paging``, ...), so a failure names the check;
the message names the feed and what is wrong. Pulls are shared between the checks of one feed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from fundx.core.settings import Settings
from onboarding.conformance import CHECKS, FAILED, SKIPPED, Context, check_skip, run_check

#: people in the shared sandbox's city: every feed has rows, over several files and pages
PEOPLE = 5_000

_shared: dict[str, Any] = {}


def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The one sandbox of this test session for the conformance tests (started on first use)."""
    if "sandbox" not in _shared:
        from sandbox.agencies import Sandbox

        _shared["sandbox"] = Sandbox(tmp_path_factory.mktemp("conformance-agencies"), people=PEOPLE).start()
    return _shared["sandbox"]


def stop_shared_sandbox() -> None:
    sandbox = _shared.pop("sandbox", None)
    _shared.pop("contexts", None)
    if sandbox is not None:
        sandbox.stop()


@pytest.fixture(scope="session")
def conformance_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's sandbox agencies for the conformance suite (endpoints in ``sandbox.env``, not os.environ)."""
    yield shared_sandbox(tmp_path_factory)
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


def conformance_tests(feed: str, *, skip: Mapping[str, str] | None = None) -> dict[str, Callable[..., None]]:
    """``{"test_<check>": test}`` for every check of the suite against ``feed``.

    ``skip`` maps a check to the written reason for skipping it; an unknown check or an empty
    reason is a ValueError when the test file is collected.
    """
    skipped = check_skip(skip)
    return {f"test_{check}": _test(feed, check, skipped) for check in CHECKS}


def _test(feed: str, check: str, skip: dict[str, str]) -> Callable[..., None]:
    def test(conformance_sandbox: Any) -> None:
        result = run_check(check, context_for(feed, conformance_sandbox), skip=skip)
        if result.status == SKIPPED:
            pytest.skip(result.message)
        if result.status == FAILED:
            pytest.fail(result.message, pytrace=False)

    test.__name__ = test.__qualname__ = f"test_{check}"
    test.__doc__ = f"{feed} passes the conformance check {check!r}."
    return test
