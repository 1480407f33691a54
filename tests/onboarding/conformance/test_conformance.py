"""Every feed of the registry passes the connector conformance suite (onboarding/conformance/)."""

from __future__ import annotations

from typing import Any

import pytest
from conformance_suite import cases, run_case


@pytest.mark.parametrize(("feed", "check"), cases())
def test_conformance(feed: str, check: str, conformance_sandbox: Any) -> None:
    """The feed passes the conformance check (or skips it with a written reason)."""
    run_case(feed, check, conformance_sandbox)
