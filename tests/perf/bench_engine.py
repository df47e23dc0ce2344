"""Engine benchmark: evaluations per second and p50/p99 latency, all variants in one run.

    python tests/perf/bench_engine.py [--n 3000] [--repeat 5] [--soak 0]

Variants (one core, one thread, the same documents for each):
  validate            strict parse + JSON Schema validation alone (the baseline)
  durable+verify      full evaluation with trace, durable_rules checked by the reference evaluator
  durable             full evaluation with trace, no verification
  reference           full evaluation with trace on the pure-Python backend
  durable, no trace   findings and because only (what an integration that logs no trace pays)
  +findings           durable+verify, then reading result.findings (built on first read)
  +to_json            durable+verify, then the whole result document as JSON text (the CLI's output)
Documents: every facts file in examples/ plus variants with random fields removed
(unknowns), so rules are decided, undecided and false in realistic proportions.
``--repeat N`` measures the variants in N interleaved rounds and prints, per variant,
the median over rounds (and the range of rates): shared machines drift by 15% and
more between runs, and a round-robin median is what survives that. Ratios are
against validate in the same round.
``--soak N`` then runs N more evaluations and prints RSS before and after.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared document helper
from example_docs import examples_with_unknowns


def documents(count: int, seed: int = 7) -> list[bytes]:
    return [json.dumps(doc).encode() for doc in examples_with_unknowns(count, seed=seed, drop=0.3)]


Stats = tuple[float, float, float]  # evaluations/s, p50 us, p99 us


def measure(func, docs: list[bytes]) -> Stats:
    for doc in docs[:50]:
        func(doc)  # warm-up
    times = []
    for doc in docs:
        start = time.perf_counter_ns()
        func(doc)
        times.append(time.perf_counter_ns() - start)
    times.sort()
    rate = len(times) / (sum(times) / 1e9)
    return rate, statistics.median(times) / 1e3, times[int(len(times) * 0.99) - 1] / 1e3


def report(label: str, rounds: list[Stats], ratios: list[float]) -> None:
    rates = [r[0] for r in rounds]
    spread = f" (rounds {min(rates):.0f}-{max(rates):.0f})" if len(rounds) > 1 else ""
    print(
        f"{label:18s} {statistics.median(rates):7.0f}/s{spread:24s} "
        f"p50 {statistics.median(r[1] for r in rounds):7.1f} us   "
        f"p99 {statistics.median(r[2] for r in rounds):7.1f} us   "
        f"p50 vs validate {statistics.median(ratios):5.1f}x"
    )


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="documents per variant")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; medians are reported")
    parser.add_argument("--soak", type=int, default=0, help="extra evaluations for the memory check")
    args = parser.parse_args()
    docs = documents(args.n)
    verified = Engine(packs=BUILTIN_PACKS)
    plain = Engine(packs=BUILTIN_PACKS, verify=False)
    reference = Engine(packs=BUILTIN_PACKS, backend="reference")
    print(
        f"neurocds benchmark: {len(docs)} documents, {len(verified.rules)} rules in "
        f"{len(verified.packs)} packs, backend {verified.backend_name}"
    )
    variants = [
        ("validate", verified.validate),
        ("durable+verify", verified.evaluate),
        ("durable", plain.evaluate),
        ("reference", reference.evaluate),
        ("durable, no trace", lambda d: plain.evaluate(d, trace=False).findings),
        ("+findings", lambda d: verified.evaluate(d).findings),
        ("+to_json", lambda d: verified.evaluate(d).to_json()),
    ]
    rounds: dict[str, list[Stats]] = {label: [] for label, _ in variants}
    ratios: dict[str, list[float]] = {label: [] for label, _ in variants}
    for _ in range(args.repeat):
        for label, func in variants:
            stats = measure(func, docs)
            rounds[label].append(stats)
            ratios[label].append(stats[1] / rounds["validate"][-1][1])
    for label, _ in variants:
        report(label, rounds[label], ratios[label])
    if args.soak:
        before = rss_mb()
        for i in range(args.soak):
            verified.evaluate(docs[i % len(docs)])
        print(f"soak: {args.soak} evaluations, RSS {before:.1f} MB -> {rss_mb():.1f} MB")


if __name__ == "__main__":
    main()
