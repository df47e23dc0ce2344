"""Instructions per evaluation, counted by valgrind's callgrind: repeatable where timings drift.

    python tests/perf/count_instructions.py [--n 600]

Runs the engine benchmark's documents through ``Engine().evaluate`` (durable_rules with
verify and trace, the default) under callgrind twice, once with N evaluations and once
with none, and prints the difference divided by N. Needs ``valgrind`` on PATH; takes
about a minute for N = 600.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from neurocds_packs import BUILTIN_PACKS

HERE = Path(__file__).resolve().parent


def workload(n: int) -> None:
    sys.path.insert(0, str(HERE))
    from bench_engine import documents

    from neurocds import Engine

    docs = documents(max(n, 1))
    engine = Engine(packs=BUILTIN_PACKS)
    engine.evaluate(docs[0])  # first evaluation (lazy imports, caches) belongs to both runs
    for doc in docs[:n]:
        engine.evaluate(doc)


def collected(n: int) -> int:
    command = [sys.executable, __file__, "--workload", str(n)]
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise SystemExit(f"callgrind printed no count:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600, help="evaluations to count")
    parser.add_argument("--workload", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload is not None:
        workload(args.workload)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    per_evaluation = (collected(args.n) - collected(0)) / args.n
    print(f"{per_evaluation:,.0f} instructions per evaluation ({args.n} benchmark documents, durable+verify, trace)")


if __name__ == "__main__":
    main()
