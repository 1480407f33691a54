"""`make chaos`: all eight feeds, every fault profile, SIGKILLs of the exchange, then the books against the truth.

    python -m chaos [--seed S] [--people N] [--rows N] [--nights N] [--min-faults N] [--min-kills N]
                    [--prefect-nights N] [--max-runs N] [--dir PATH] [--record PATH] [--keep]

Prints one line per run, a table per feed (rows expected, delivered, quarantined, duplicated, lost,
batches, where the canary went) and the totals; exits 1 when a row was duplicated or lost, fewer
faults or kills than asked were made, the canary or a secret was found in plain text, or the
ledger's books do not balance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.night import Chaos, Options


def main(argv: list[str] | None = None) -> int:
    d = Options()
    parser = argparse.ArgumentParser(prog="python -m chaos", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=d.seed, help=f"generator and chaos seed ({d.seed})")
    parser.add_argument("--people", type=int, default=d.people, help=f"people in the synthetic city ({d.people})")
    parser.add_argument("--rows", type=int, default=d.rows, help=f"rows kept per feed at most ({d.rows})")
    parser.add_argument("--nights", type=int, default=d.nights,
                        help=f"nights (window ends spread over the generated months, the last one now) ({d.nights})")
    parser.add_argument("--min-faults", type=int, default=d.min_faults, help=f"faults to inject at least ({d.min_faults})")
    parser.add_argument("--min-kills", type=int, default=d.min_kills, help=f"SIGKILLs at least ({d.min_kills})")
    parser.add_argument("--prefect-nights", type=int, default=d.prefect_nights,
                        help=f"runs of the real nightly Prefect flow, the last run among them ({d.prefect_nights})")
    parser.add_argument("--max-runs", type=int, default=d.max_runs, help=f"give up after this many runs ({d.max_runs})")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work folder (default: $FUNDX_HOME/chaos/<time>): the exchange's home, Prefect's, logs, temp")
    parser.add_argument("--record", type=Path, default=None, help="where the JSON record goes (default: <dir>/chaos.json)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder's homes and logs (default: only the record)")
    args = parser.parse_args(argv)
    options = Options(seed=args.seed, people=args.people, rows=args.rows, nights=args.nights,
                      min_faults=args.min_faults, min_kills=args.min_kills, prefect_nights=args.prefect_nights,
                      max_runs=args.max_runs, workdir=args.dir, record=args.record, keep=args.keep)
    chaos = Chaos(options)
    chaos.run()
    return 0 if chaos.ok else 1


if __name__ == "__main__":
    sys.exit(main())
