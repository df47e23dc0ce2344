"""Rule-scale benchmark: load time and per-evaluation time from 100 to 4,000 synthetic rules.

    python tests/perf/bench_rule_scale.py [--sizes 100,1000,4000] [--docs 200] [--rounds 3]

For each size, both backends (durable+verify, the default, and reference) load the
generated rule set (tests/perf/synthetic_rules.py) and evaluate the same benchmark
documents, in interleaved rounds; the figures are medians over rounds. The goal is
linear cost: time per rule at the largest size within 1.25x of that at 1,000 rules,
printed as ``per-rule ratio``. Each round measures every engine twice, with and without
gc.freeze() (which moves the long-lived compiled rules out of the collector's sight), so
the two columns come from the same machine state.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from neurocds import Engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from example_docs import examples_with_unknowns
from synthetic_rules import synthetic_pack

BACKENDS = ("durable", "reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,4000")
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    docs = [json.dumps(d).encode() for d in examples_with_unknowns(args.docs, seed=7, drop=0.3)]
    engines: dict[tuple[int, str], Engine] = {}
    load: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for backend in BACKENDS:
                start = time.perf_counter()
                pack = synthetic_pack(Path(tmp) / f"{backend}{n}", n)
                engines[n, backend] = Engine(plugins=[pack], entry_points=False, backend=backend)
                load[n, backend] = time.perf_counter() - start
    samples: dict[tuple[bool, int, str], list[float]] = {(f, *key): [] for f in (False, True) for key in engines}
    gc.collect()
    for _ in range(args.rounds):
        for key, engine in engines.items():
            for frozen in (False, True):
                if frozen:
                    gc.freeze()
                for doc in docs[:20]:
                    engine.evaluate(doc)  # warm-up
                start = time.perf_counter()
                for doc in docs:
                    engine.evaluate(doc)
                samples[(frozen, *key)].append((time.perf_counter() - start) / len(docs))
                gc.unfreeze()
    base = 1000 if 1000 in sizes else sizes[0]
    print(f"{'rules':>6} {'backend':10} {'load s':>7} {'load/rule ratio':>15} {'us/eval':>9} {'per-rule ratio':>15}"
          f" {'frozen us/eval':>15} {'per-rule ratio':>15}")  # fmt: skip
    for n in sizes:
        for backend in BACKENDS:
            load_ratio = (load[n, backend] / n) / (load[base, backend] / base)
            cells = []
            for frozen in (False, True):
                per_eval = statistics.median(samples[frozen, n, backend])
                ratio = (per_eval / n) / (statistics.median(samples[frozen, base, backend]) / base)
                cells.append(f"{per_eval * 1e6:9.0f} {ratio:15.2f}")
            print(f"{n:6d} {backend:10} {load[n, backend]:7.2f} {load_ratio:15.2f} {cells[0]} {cells[1]:>31}")
    print(
        f"(ratios: per rule against {base} rules, goal <= 1.25; frozen: gc.freeze(); medians of {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
