"""The exchange's side of the chaos night: one run, in a process of its own, that the harness may SIGKILL.

Two kinds of run:

- **feed runs** (:func:`run_jobs`): :func:`fundx.exchange.run.run_feed` for a list of jobs (feed, start,
  end), in a process forked from a warm fork server (:mod:`chaos._warm` has imported pandas, pyarrow,
  Great Expectations and the exchange once), so that a run costs its work and not 9 s of imports —
  that is what lets the harness kill the exchange dozens of times inside the CI budget;
- **Prefect nights** (``python -m chaos.child --night --end E``): the real ``nightly-exchange`` flow
  with its ephemeral Prefect server, in a session of its own so that a kill takes the server too.

Both print ``chaos-job <n> ok|failed <feed> ...`` lines (counts and error types only) and log at INFO
into the run's log file, which the harness then searches for personal data and secrets.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _settle(env: dict[str, str], drop: tuple[str, ...] = ("FUNDX_TEST_KILL_AT",)) -> None:
    """This run's environment (the fork server's is the harness's of when it started)."""
    for name in drop:
        os.environ.pop(name, None)
    os.environ.update(env)
    tempfile.tempdir = None  # computed again from this run's TMPDIR
    from fundx.core.settings import reload_settings

    reload_settings()


def run_jobs(env: dict[str, str], log_path: str, jobs: list[tuple[str, str | None, str | None]]) -> None:
    """Run the jobs one after the other in this (forked) process; exit with the number that failed.

    stdout and stderr go to ``log_path``: the kill point's line (``fundx-test-kill-point NAME``) is
    what the harness waits for there.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _settle(env)
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr, force=True)
    from fundx.core.errors import FundxError, content_free
    from fundx.exchange.run import run_feed

    failed = 0
    for number, (feed, start, end) in enumerate(jobs):
        try:
            done = run_feed(feed, start=start, end=end)
        except FundxError as exc:
            failed += 1
            print(f"chaos-job {number} failed {feed} {exc.kind}", flush=True)
        except Exception as exc:  # noqa: BLE001 - an unexpected error is a finding: named by type, the next job runs
            failed += 1
            print(f"chaos-job {number} failed {feed} {content_free(exc).kind}", flush=True)
        else:
            print(f"chaos-job {number} ok {feed} {done.handoff.outcome} {done.rows}", flush=True)
    sys.stdout.flush()
    sys.exit(min(failed, 100))


def night(end: str, feeds: list[str] | None) -> int:
    """One ``nightly-exchange`` flow run (Prefect's ephemeral server); 0 when every feed completed."""
    logging.basicConfig(level=logging.INFO, format=FORMAT, stream=sys.stderr, force=True)
    from fundx.cli.common import prefect_defaults

    prefect_defaults()
    from flows.exchange import nightly_exchange
    from fundx.core.errors import NightFailed

    try:
        outcomes: list[Any] = nightly_exchange(feeds=feeds, end=end)
    except NightFailed as exc:
        print(f"chaos-night failed {exc.kind}", flush=True)
        return 1
    for number, o in enumerate(outcomes):
        print(f"chaos-job {number} ok {o.feed} {o.handoff} {o.rows}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.child", description="one Prefect night of the chaos harness")
    parser.add_argument("--night", action="store_true", help="run the nightly-exchange flow")
    parser.add_argument("--end", required=True, help="the night's end (ISO time)")
    parser.add_argument("--feed", action="append", default=None, help="only these feeds")
    args = parser.parse_args(argv)
    return night(args.end, args.feed)


if __name__ == "__main__":
    sys.exit(main())
