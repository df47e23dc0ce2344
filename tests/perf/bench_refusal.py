"""Refusal benchmark: how long and how much memory each hostile document costs to refuse.

    python tests/perf/bench_refusal.py [--repeat 5] [--max-ms 50]

Each document of tests/hostile/corpus.py (all under the 1 MiB size limit but one) is
refused ``--repeat`` times through ``Engine.validate`` (the strict JSON path, what the
CLI and the service call) and, where the document parses as JSON, through the Python
dict path (``Engine.validate(dict)``, what integration scripts call). Prints per
document the median wall time, the peak memory allocated by one refusal (tracemalloc,
measured in a separate run so it does not slow the timed ones), and the number of
violations listed. Exit status 1 when a median exceeds ``--max-ms`` (the target is
50 ms): a timing report, not a test (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neurocds import Engine
from neurocds.errors import FactsValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared corpus
from hostile.corpus import corpus


def refuse(func: Callable[[], Any]) -> FactsValidationError:
    try:
        func()
    except FactsValidationError as exc:
        return exc
    raise AssertionError("the document was accepted")


def median_ms(func: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        refuse(func)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_mib(func: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        refuse(func)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def as_python(body: bytes) -> Any:
    """The document as a dict, as a script would build it (None when json.loads refuses it)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-ms", type=float, default=50.0)
    args = parser.parse_args()
    engine = Engine(backend="reference")
    worst = 0.0
    print(f"{'document':30s} {'bytes':>9s} {'json ms':>8s} {'MiB':>6s} {'dict ms':>8s} {'MiB':>6s}  listed")
    for name, body, _pointer in corpus():
        json_ms = median_ms(lambda body=body: engine.validate(body), args.repeat)
        json_mib = peak_mib(lambda body=body: engine.validate(body))
        listed = len(refuse(lambda body=body: engine.validate(body)).violations)
        doc = as_python(body)
        dict_ms = dict_mib = float("nan")
        if doc is not None:
            dict_ms = median_ms(lambda doc=doc: engine.validate(doc), args.repeat)
            dict_mib = peak_mib(lambda doc=doc: engine.validate(doc))
            worst = max(worst, dict_ms)
        worst = max(worst, json_ms)
        print(f"{name:30s} {len(body):9d} {json_ms:8.1f} {json_mib:6.1f} {dict_ms:8.1f} {dict_mib:6.1f}  {listed}")
    print(f"slowest refusal: {worst:.1f} ms (target {args.max_ms:g} ms)")
    return 0 if worst <= args.max_ms else 1


if __name__ == "__main__":
    sys.exit(main())
