"""Refusal benchmark: how long and how much memory each hostile document costs to refuse.

    python tests/perf/bench_refusal.py [--repeat 5] [--max-ms 50]

Each document of tests/hostile/corpus.py (all under the 1 MiB size limit but one; the
worst shapes for each stage among them, over and under the parse limits)
is refused ``--repeat`` times through ``Engine.validate`` with bytes (the strict JSON
path: what the CLI and the service call) and, where ``json.loads`` can build it, with
the dict (what integration scripts pass). Printed per document: the median CPU time
of this process (``time.process_time``: on a shared machine, wall time mostly
measures the other processes), the peak memory one refusal takes (growth of the
resident set's high-water mark where Linux can measure it, else tracemalloc: see
tests/hostile/memory.py; in a fresh process per document), the number of
violations listed, and as the baseline of the same run the median CPU time of a
bare ``json.loads`` of the same bytes (what merely reading the document costs).
Then the worst FHIR shapes (``fhir_corpus``: a Bundle or CDS Hooks call of 1 MiB, held to
size and depth only) refused by ``parse_strict`` with the service's limits, each beside
its ``json.loads`` baseline. Exit status 1 when a median exceeds ``--max-ms`` (the target
is 50 ms): a report, not a test (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neurocds.engine import Engine
from neurocds.errors import FactsValidationError
from neurocds.facts.strictjson import fhir_limits, parse_strict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared corpus
from hostile import memory
from hostile.corpus import LIMIT, corpus, fhir_corpus

from neurocds_packs import BUILTIN_PACKS


def refuse(func: Callable[[], Any]) -> FactsValidationError:
    try:
        func()
    except FactsValidationError as exc:
        return exc
    raise AssertionError("the document was accepted")


def median_ms(func: Callable[[], Any], repeat: int, *, refused: bool = True) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        if refused:
            refuse(func)
        else:
            with contextlib.suppress(ValueError, RecursionError):
                func()
        times.append((time.process_time() - start) * 1e3)
    return statistics.median(times)


def peak_mib(name: str, path: str) -> float:
    """Peak resident growth of one refusal, measured in a fresh process.

    In this process the allocator keeps what earlier refusals freed, so later ones
    would look free; a fresh process (warmed with one small document, so that lazy
    imports and caches are not counted) measures the refusal alone.
    """
    done = subprocess.run(
        [sys.executable, __file__, "--memory-of", name, path], capture_output=True, text=True, check=True, timeout=300
    )
    return float(done.stdout.strip().splitlines()[-1])


def memory_of(name: str, path: str) -> None:
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    refuse(functools.partial(engine.validate, b'{"facts_version": "1"}'))  # warm: imports, caches
    body = dict((item[0], item[1]) for item in corpus())[name]
    facts: Any = body if path == "bytes" else json.loads(body)
    print(memory.peak_mib(lambda: refuse(functools.partial(engine.validate, facts))))


def as_python(body: bytes) -> Any:
    """The document as a dict, as a script would build it (None when json.loads refuses it)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _load() -> str:
    """The 1-minute load average: CPU time is noisy too when the machine is shared."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def fhir_refusals(repeat: int) -> float:
    """The FHIR shapes (tests/hostile/corpus.py fhir_corpus), refused by ``parse_strict`` with
    the limits the CDS Hooks service and ``evaluate --fhir`` use (size and depth only);
    returns the slowest median."""
    limits = fhir_limits(LIMIT, 64)
    print(f"\nFHIR bodies (parse_strict, fhir_limits): load average {_load()}")
    print("{:40s} {:>8s} {:>8s} {:>8s}  listed".format("document", "bytes", "loads ms", "refuse ms"))
    worst = 0.0
    for name, body, _pointer in fhir_corpus():
        loads_ms = median_ms(functools.partial(json.loads, body), repeat, refused=False)
        refusal = functools.partial(parse_strict, body, limits)
        refuse_ms = median_ms(refusal, repeat)
        worst = max(worst, refuse_ms)
        listed = len(refuse(refusal).violations)
        print(f"{name:40s} {len(body):8d} {loads_ms:8.1f} {refuse_ms:8.1f}  {listed}")
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-ms", type=float, default=50.0)
    parser.add_argument("--memory-of", nargs=2, metavar=("DOCUMENT", "bytes|dict"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        memory_of(*args.memory_of)
        return 0
    engine = Engine(packs=BUILTIN_PACKS, backend="reference")
    print(f"load average at the start: {_load()}")
    worst = 0.0
    head = ("document", "bytes", "loads ms", "json ms", "MiB", "dict ms", "MiB")
    print("{:28s} {:>8s} {:>8s} {:>8s} {:>5s} {:>8s} {:>5s}  listed".format(*head))
    for name, body, _pointer in corpus():
        loads_ms = median_ms(functools.partial(json.loads, body), args.repeat, refused=False)
        as_bytes = functools.partial(engine.validate, body)
        json_ms, json_mib = median_ms(as_bytes, args.repeat), peak_mib(name, "bytes")
        listed = len(refuse(as_bytes).violations)
        doc = as_python(body)
        dict_ms = dict_mib = float("nan")
        if doc is not None:
            as_dict = functools.partial(engine.validate, doc)
            dict_ms, dict_mib = median_ms(as_dict, args.repeat), peak_mib(name, "dict")
            worst = max(worst, dict_ms)
        worst = max(worst, json_ms)
        row = (name, len(body), loads_ms, json_ms, json_mib, dict_ms, dict_mib, listed)
        print("{:28s} {:8d} {:8.1f} {:8.1f} {:5.1f} {:8.1f} {:5.1f}  {}".format(*row))
    worst = max(worst, fhir_refusals(args.repeat))
    print(f"slowest refusal: {worst:.1f} ms (target {args.max_ms:g} ms); load average at the end: {_load()}")
    return 0 if worst <= args.max_ms else 1


if __name__ == "__main__":
    sys.exit(main())
