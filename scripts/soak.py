#!/usr/bin/env python
"""Soak test: run the real server for N minutes at a steady event rate and watch memory.

Not part of CI. Starts ``liaison serve`` as its own process (which starts the
session worker, and Xvfb when there is no display), writes a Builder-style
experiment into a temporary ROOT that adds ``--rate`` data rows per second,
connects ``--clients`` observers (each checks that the rows it receives are
contiguous: nothing lost, nothing repeated) and one controller that starts the
run and sends ~10 cheap commands a second (ping, state, get_exp_info),
timing their round trips.

Every ``--interval`` seconds it prints one line: VmRSS of the server and of the
worker, the journal's size (journal.sqlite + -wal), rows delivered per client,
command round-trip p50/p99 and delivery lag in that window. At the end: memory
after the warm-up vs at the end and the least-squares slope in MB/minute per
process, next to the growth the design accounts for (the server's replay
buffer, bounded; every row the experiment's ExperimentHandler keeps for its
CSV, measured per row before the soak), rows lost/duplicated, rows received vs
expected (and vs run_finished, the journal and the CSV), the server's warnings
and whether it exited cleanly and left no process behind. Everything goes to
``--out`` as JSON.

  .venv/bin/python scripts/soak.py [--minutes 10] [--rate 1000] [--clients 10] [--out artifacts/soak.json]
  .venv/bin/python scripts/soak.py --minutes 0.75          # smoke run

Exit status: 0 no problem found, 1 problems found (listed at the end), 2 the
soak could not be set up, 130 interrupted. The server and its children are
stopped in every case (SIGTERM, then SIGKILL of its process group after 60 s).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from soaklib.errors import SoakError  # noqa: E402
from soaklib.report import write_report  # noqa: E402
from soaklib.server import SERVER_STOP_TIMEOUT  # noqa: E402
from soaklib.soak import Soak  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The soak's options; exits 2 on values that make no soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="How long to soak (fractions allowed).")
    parser.add_argument("--rate", type=float, default=1000.0, help="Data rows per second the experiment adds.")
    parser.add_argument("--clients", type=int, default=10, help="Observer clients counting rows.")
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "soak.json", help="JSON report.")
    parser.add_argument("--interval", type=float, default=10.0, help="Seconds between samples.")
    parser.add_argument("--warmup", type=float, default=30.0,
                        help="Seconds of run before memory counts (at most half the soak).")
    parser.add_argument("--cmd-rate", type=float, default=10.0, help="Controller commands per second.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary ROOT/DATA folder.")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.clients < 0 or args.interval <= 0 or args.cmd_rate <= 0:
        parser.error("--minutes, --rate, --interval and --cmd-rate must be > 0, --clients >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one soak; the exit status the module docstring lists. The server is stopped in every case."""
    args = parse_args(argv)
    soak = Soak(args)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)  # outside the event loop; inside, drive() cancels itself
    signal.signal(signal.SIGHUP, interrupted)
    code = 0
    try:
        soak.prepare()
        print(f"starting liaison serve in {soak.tmp} ...", flush=True)
        soak.start_server()
        print(f"server pid {soak.server.pid}, worker pid {soak.worker_pids[0]}, {soak.url}", flush=True)
        asyncio.run(soak.drive())
        soak.status = "completed" if soak.status == "run ended" else soak.status
    except (KeyboardInterrupt, asyncio.CancelledError):
        soak.status = f"interrupted ({soak.status})"
        code = 130
    except SoakError as exc:
        soak.status = f"set-up failed ({soak.status})"
        soak.notes.append(f"soak error: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except Exception as exc:  # noqa: BLE001 - report, then clean up
        soak.status = f"crashed ({soak.status})"
        soak.notes.append(f"soak crashed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        traceback.print_exc()
        code = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # cleanup is bounded (60 s + kill): let it finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if soak.server is not None:
            print(f"stopping the server (SIGTERM, up to {SERVER_STOP_TIMEOUT:.0f} s) ...", flush=True)
            soak.checks["server_exit"] = soak.server.stop()
        soak.check_after_stop()
        if code in (0, 130):
            soak.evaluate(interrupted=soak.status.startswith("interrupted"))
        write_report(soak, args.out)
        if soak.tmp is not None:
            if args.keep or (soak.problems and code == 0):
                print(f"kept {soak.tmp} (server logs, journal, run folder)")
            else:
                shutil.rmtree(soak.tmp, ignore_errors=True)
    if code == 0 and soak.problems:
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
