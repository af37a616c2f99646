"""Run the test suite several times in a row while CPU-bound processes compete for the machine.

The suite must not depend on how fast the machine is: no wall-clock upper bounds, no sleeps
standing in for events. This script makes that checkable. It starts ``--burners`` processes that
each spin a pure-Python loop for as long as the script runs, then runs pytest ``--rounds`` times
in a row and stops at the first round that fails (its exit status is pytest's).

    python tests/under_load.py --rounds 3 --burners 1 -- -q -x -p no:cacheprovider

Arguments after ``--`` go to pytest (default: ``-q -x -p no:cacheprovider``).
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Sequence


def _burn() -> None:
    """Keep one core busy with interpreted bytecode until killed."""
    x = 0
    while True:
        for i in range(1_000_000):
            x = (x + i * i) % 1_000_003


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="suite runs in a row (default 3)")
    parser.add_argument("--burners", type=int, default=1, help="CPU-bound processes (default 1)")
    parser.add_argument("pytest_args", nargs="*", help="arguments for pytest (after --)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.burners < 0:
        parser.error("--rounds must be >= 1 and --burners >= 0")
    pytest_args = args.pytest_args or ["-q", "-x", "-p", "no:cacheprovider"]

    ctx = multiprocessing.get_context("spawn")
    burners = [ctx.Process(target=_burn, daemon=True, name=f"burner-{n}")
               for n in range(args.burners)]
    for proc in burners:
        proc.start()
    try:
        for round_no in range(1, args.rounds + 1):
            started = time.monotonic()
            print(f"== round {round_no}/{args.rounds} with {args.burners} CPU burner(s)",
                  flush=True)
            code = subprocess.call([sys.executable, "-m", "pytest", *pytest_args])
            took = time.monotonic() - started
            print(f"== round {round_no}: exit {code} after {took:.0f} s", flush=True)
            if code != 0:
                print(f"== FAILED in round {round_no}; {round_no - 1} round(s) passed", flush=True)
                return code
        print(f"== all {args.rounds} round(s) passed under load", flush=True)
        return 0
    finally:
        for proc in burners:
            proc.terminate()
        for proc in burners:
            proc.join(10)


if __name__ == "__main__":
    raise SystemExit(main())
