"""Run the sandbox agencies in the foreground: ``python -m sandbox serve --home DIR``.

`fundx sandbox start` spawns this detached and waits for ``DIR/sandbox.json``; SIGTERM or SIGINT
stops the agencies cleanly (sandbox.json and exchange.env are removed).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from datetime import date
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until a signal arrives; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description="The simulated agencies of fundx.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the agencies in the foreground until SIGTERM/SIGINT")
    serve.add_argument("--home", type=Path, required=True, help="where the agencies keep their data")
    serve.add_argument("--people", type=int, default=10_000, help="people in the synthetic city")
    serve.add_argument("--seed", type=int, default=None, help="generator seed (default: the fixed demo seed)")
    serve.add_argument("--as-of", type=date.fromisoformat, default=None, help="the city's as-of date (YYYY-MM-DD)")
    serve.add_argument("--faults", default="", help="fault profiles, e.g. 'police=server_errors,rate_limit;justice=empty'")
    serve.add_argument("--medical-db-url", default=None, help="PostgreSQL URL for the settlement database")
    serve.add_argument("--stall-seconds", type=float, default=3.0, help="how long read_timeout stalls")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument("--verbose", action="store_true", help="log every request (method, path, status)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from sandbox.agencies import Sandbox, parse_faults
    from sandbox.city import DEFAULT_AS_OF, DEFAULT_SEED

    try:
        faults = parse_faults(args.faults)
    except ValueError as exc:
        parser.error(f"--faults: {exc}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = Sandbox(
        args.home,
        people=args.people,
        seed=DEFAULT_SEED if args.seed is None else args.seed,
        as_of=args.as_of or DEFAULT_AS_OF,
        faults=faults,
        medical_db_url=args.medical_db_url,
        stall_seconds=args.stall_seconds,
        host=args.host,
    )
    sandbox.start()
    try:
        for agency, where in sandbox.urls.items():
            logging.getLogger("sandbox").info("%s: %s", agency, where)
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
        logging.getLogger("sandbox").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
