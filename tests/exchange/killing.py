"""Killing a run of the exchange at a named point (fundx.exchange.handoff's FUNDX_TEST_KILL_AT), for the crash tests."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = "import sys; from fundx.exchange.run import run_feed; run_feed(sys.argv[1], end=sys.argv[2])"


def run_until_killed(point: str, home: Path, feed: str, end: str) -> None:
    """Run ``run_feed(feed, end=end)`` in a child process and SIGKILL it when it reaches ``point``."""
    env = {**os.environ, "FUNDX_TEST_KILL_AT": point}
    with open(home.parent / f"child-{point}.log", "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, feed, end], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=log)
        marker, seen = f"fundx-test-kill-point {point}".encode(), b""
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 90
        try:
            while marker not in seen:
                if time.monotonic() > deadline or not selector.select(timeout=deadline - time.monotonic()):
                    raise AssertionError(f"the child never reached {point}")
                chunk = os.read(child.stdout.fileno(), 4096)
                if not chunk:
                    raise AssertionError(f"the child ended before {point}: {(home.parent / f'child-{point}.log').read_text()[-2000:]}")
                seen += chunk
            child.send_signal(signal.SIGKILL)  # the real thing: no cleanup, no finally, no atexit
        finally:
            if child.poll() is None and marker not in seen:
                child.kill()
            child.wait(timeout=30)
            selector.close()
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
