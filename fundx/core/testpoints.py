"""TEST ONLY: the points where a test may stop a feed's run, to prove a crash there loses nothing.

tests/exchange/test_handoff.py and the chaos night (chaos/) run a feed in a child process with
FUNDX_TEST_KILL_AT naming a point, read the line :func:`kill_point` prints there and send the child
SIGKILL. Nothing else reads the variable; unset (always, outside those tests) a point does nothing.
"""

from __future__ import annotations

import os
import time

#: the delivery's own steps (fundx.exchange.handoff): after the first part is sealed, after every part is written,
#: inside the commit, after it, after READY
DELIVERY_POINTS = ("after_seal", "after_write", "before_commit", "after_commit", "after_ready")
#: every point, in the order a run meets them (chaos/night.py draws from these)
KILL_POINTS = ("after_recover", "in_recover", "after_pull", "between_chunks", "after_check", "after_quarantine",
               *DELIVERY_POINTS)


def kill_point(name: str) -> None:
    """Wait here to be killed when FUNDX_TEST_KILL_AT names this point (see the module's docstring)."""
    if os.environ.get("FUNDX_TEST_KILL_AT") != name:
        return
    print(f"fundx-test-kill-point {name}", flush=True)
    time.sleep(600)
    os._exit(97)  # never killed: fail loudly rather than carry on
