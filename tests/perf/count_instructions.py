"""Instructions per evaluation, counted by valgrind's callgrind: repeatable where timings drift.

    python tests/perf/count_instructions.py [--n 600] [--backend durable|reference] [--stages]

Runs the engine benchmark's documents through ``Engine().evaluate`` (by default
durable_rules with verify and trace) under callgrind twice, once with N evaluations and
once with none, and prints the difference divided by N. Both runs build the same N
documents and start the same engine, so the difference is evaluation alone (the
baseline once built one document where the measured run built N, which overcounted by
about 7 %). Needs ``valgrind`` on PATH; takes about a minute for N = 600.

``--stages`` breaks one evaluation down: each stage (strict parse + schema check, facts
hash, durable session, reference evaluation) runs alone on inputs that every run
prepares alike, so its count is that stage's cost; the rest of ``Engine.evaluate``
(result building, verify compare, hooks) is the total minus the stages. What a consumer
pays when it first reads the explanation (findings with ``because``, derived facts,
missing data, trace, ``to_json()``) is counted separately, and so are whole evaluations
followed by reading the findings or writing the JSON.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from neurocds_packs import BUILTIN_PACKS

HERE = Path(__file__).resolve().parent


# Stages counted by ``--stages``, in the order Engine.evaluate runs them.
STAGES = ("parse+schema", "facts hash", "durable session", "reference evaluation")
# Built from the recorded node states when a consumer first reads them, each counted alone
# on results every run prepares alike, except the last two, which count whole evaluations.
CONSUMER_STAGES = (
    "findings+because",
    "derived",
    "missing data",
    "to_dict (findings, derived, missing data, trace)",
    "to_json (to_dict + JSON text)",
    "evaluate, then read findings",
    "evaluate, then to_json",
)


def workload(n: int, stage: str, backend: str) -> None:
    sys.path.insert(0, str(HERE))
    from bench_engine import documents

    from neurocds import Engine

    docs = documents(n)  # the same documents in every run: building them is not evaluation
    engine = Engine(packs=BUILTIN_PACKS, backend=backend)
    engine.evaluate(docs[0]).to_json()  # first use (lazy imports, caches) belongs to every run
    if stage not in ("baseline", "evaluate", *STAGES, *CONSUMER_STAGES):
        raise SystemExit(f"unknown stage {stage!r}")
    run_stage(engine, docs, stage)


def run_stage(engine: Any, docs: list[bytes], stage: str) -> None:
    """Prepare every stage's inputs (alike in every run), then run only ``stage`` on them."""
    from neurocds.answers import evidence
    from neurocds.facts.strictjson import sha256_canonical

    parsed = [engine.validate(doc) for doc in docs]
    evaluations = [engine.reference.run(doc, {}, None, frozenset()) for doc in parsed]
    results = [engine.evaluate(doc) for doc in docs]
    none: frozenset[str] = frozenset()
    if stage == "evaluate":
        for doc in docs:
            engine.evaluate(doc)
    elif stage == "parse+schema":
        for doc in docs:
            engine.validate(doc)
    elif stage == "facts hash":
        for doc in parsed:
            sha256_canonical(doc)
    elif stage == "durable session" and engine.durable is not None:
        for doc in parsed:
            engine.durable.run(doc, {}, None, none)
    elif stage == "reference evaluation":
        for doc in parsed:
            engine.reference.run(doc, {}, None, none)
    elif stage == "findings+because":
        for run, evaluation in evaluations:
            engine.explainer.findings(run, evaluation, evidence)
    elif stage == "derived":
        for run, evaluation in evaluations:
            engine.explainer.derived(run, evaluation, {}, {})
    elif stage == "missing data":
        for result in results:
            result.missing_data  # noqa: B018 - built on first read
    elif stage == "evaluate, then read findings":
        for doc in docs:
            engine.evaluate(doc).findings  # noqa: B018 - built on first read
    elif stage == "evaluate, then to_json":
        for doc in docs:
            engine.evaluate(doc).to_json()
    elif stage.startswith("to_dict"):
        for result in results:
            result.to_dict()
    elif stage.startswith("to_json"):
        for result in results:
            result.to_json()


def collected(n: int, stage: str, backend: str) -> int:
    return callgrind_count([sys.executable, __file__, "--workload", str(n), "--backend", backend, "--stage", stage])


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
    parser.add_argument("--stage", default="evaluate", help=argparse.SUPPRESS)
    parser.add_argument("--stages", action="store_true", help="break one evaluation down by stage")
    args = parser.parse_args()
    if args.workload is not None:
        workload(args.workload, args.stage, args.backend)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    variant = "durable+verify" if args.backend == "durable" else "reference"
    # One run outside callgrind first: after a code change the first process compiles
    # bytecode and refills the load cache, which would count in whichever run came first
    # (a baseline counted cold once made durable+verify read 1.05 M instead of 2.03 M).
    warm_up = [sys.executable, __file__, "--workload", "1", "--backend", args.backend, "--stage", "baseline"]
    subprocess.run(warm_up, check=True)
    baseline = collected(args.n, "baseline", args.backend)
    total = (collected(args.n, "evaluate", args.backend) - baseline) / args.n
    if not args.stages:
        print(f"{total:,.0f} instructions per evaluation ({args.n} benchmark documents, {variant}, trace)")
        return
    print(f"instructions per evaluation, {args.n} benchmark documents, {variant}\n")
    print("| stage of Engine.evaluate | instructions | share |\n|---|---:|---:|")
    counted = 0.0
    for stage in STAGES:
        if stage == "durable session" and args.backend != "durable":
            continue
        cost = (collected(args.n, stage, args.backend) - baseline) / args.n
        counted += cost
        print(f"| {stage} | {cost:,.0f} | {100 * cost / total:.1f} % |")
    rest = total - counted
    print(f"| result building, verify compare, hooks, uuid, time | {rest:,.0f} | {100 * rest / total:.1f} % |")
    print(f"| **Engine.evaluate** | **{total:,.0f}** | 100 % |")
    print("\n| paid when a consumer first asks | instructions |\n|---|---:|")
    for stage in CONSUMER_STAGES:
        cost = (collected(args.n, stage, args.backend) - baseline) / args.n
        print(f"| {stage} | {cost:,.0f} |")


if __name__ == "__main__":
    main()
