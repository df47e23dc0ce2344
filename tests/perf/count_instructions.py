"""Instructions per evaluation, counted by valgrind's callgrind: repeatable where timings drift.

    python tests/perf/count_instructions.py [--n 600] [--backend durable|reference]

Runs the engine benchmark's documents through ``Engine().evaluate`` (by default
durable_rules with verify and trace) under callgrind twice, once with N evaluations and
once with none, and prints the difference divided by N. Both runs build the same N
documents and start the same engine, so the difference is evaluation alone (the
baseline once built one document where the measured run built N, which overcounted by
about 7 %). Needs ``valgrind`` on PATH; takes about a minute for N = 600.
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


def workload(n: int, evaluate: bool, backend: str) -> None:
    sys.path.insert(0, str(HERE))
    from bench_engine import documents

    from neurocds import Engine

    docs = documents(n)  # the same documents in both runs: building them is not evaluation
    engine = Engine(packs=BUILTIN_PACKS, backend=backend)
    engine.evaluate(docs[0])  # first evaluation (lazy imports, caches) belongs to both runs
    if evaluate:
        for doc in docs:
            engine.evaluate(doc)


def collected(n: int, evaluate: bool, backend: str) -> int:
    command = [sys.executable, __file__, "--workload", str(n), "--backend", backend]
    if not evaluate:
        command.append("--baseline")
    return callgrind_count(command)


def callgrind_count(command: list[str]) -> int:
    """Instructions ``command`` executes, counted by callgrind."""
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
    parser.add_argument("--backend", choices=("durable", "reference"), default="durable")
    parser.add_argument("--workload", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload is not None:
        workload(args.workload, not args.baseline, args.backend)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    measured = collected(args.n, True, args.backend)
    baseline = collected(args.n, False, args.backend)
    per_evaluation = (measured - baseline) / args.n
    variant = "durable+verify" if args.backend == "durable" else "reference"
    print(f"{per_evaluation:,.0f} instructions per evaluation ({args.n} benchmark documents, {variant}, trace)")


if __name__ == "__main__":
    main()
