"""Audit appends from several processes at once, as ``neurocds serve --workers N`` makes them.

    python tests/perf/bench_audit_processes.py [--processes 1,2] [--threads 8] [--appends 30] [--rounds 2]

Each process (forked) appends, from ``--threads`` threads, ``--appends`` decisions per
thread, each with its cards record in one append, as the CDS Hooks service does. The
decisions are real: the Synthea prefetch bodies the service benchmark sends
(tests/perf/bench_cdshooks.py), converted and evaluated once before timing. Printed
per run: CPU per append (all processes, ``time.process_time``), appends/s (wall), and
the fsyncs of the log the processes made (counted by wrapping ``os.fsync`` in each),
so how many appends shared each: with group commit across processes, one fsync covers
what every process wrote before it (:mod:`neurocds.audit.durable`).

To compare with another checkout, run this file with that checkout's interpreter and
``--root`` set to it; alternate the two by hand (the machine's load falls on each alike).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any


def _decisions(root: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    sys.path[:0] = [str(root / "tests"), str(root / "tests" / "perf")]
    from bench_cdshooks import bodies, call_facts, service_limits  # type: ignore[import-not-found]  # sys.path above

    from neurocds import Engine
    from neurocds.fhir import FhirConverter
    from neurocds_packs import BUILTIN_PACKS

    engine = Engine(packs=BUILTIN_PACKS)
    converter = FhirConverter(observation_window_days=36500)  # Synthea's labs are years old
    limits = service_limits()
    out = []
    for body in bodies(1_048_576):
        facts = call_facts(converter, body, limits)
        out.append((engine.evaluate(facts).to_dict(), facts))
    return out


def _append(directory: str, work: list[Any], threads: int, appends: int, start: Any, results: Any) -> None:
    from neurocds.audit import AuditLog

    real_fsync, fsyncs = os.fsync, [0]

    def counting_fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("audit.jsonl"):
            fsyncs[0] += 1
        real_fsync(fd)

    os.fsync = counting_fsync
    log = AuditLog(directory)
    log.head()  # opened and scanned before timing

    def run(offset: int) -> None:
        for n in range(appends):
            result, facts = work[(n + offset) % len(work)]
            card = str(uuid.uuid4())
            log.append_together(
                [log.prepare_decision(result, facts), log.prepare_cards(result["evaluation_id"], [card])]
            )

    start.wait()
    cpu, wall = time.process_time(), time.perf_counter()
    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put((time.process_time() - cpu, time.perf_counter() - wall, fsyncs[0]))


def measure(work: list[Any], processes: int, threads: int, appends: int) -> str:
    from neurocds.audit import AuditLog

    directory = tempfile.mkdtemp(prefix="bench-audit-processes-", dir=os.path.expanduser("~"))  # a real disk
    try:
        AuditLog(directory)
        ctx = multiprocessing.get_context("fork")
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_append, args=(directory, work, threads, appends, start, results))
                 for _ in range(processes)]  # fmt: skip
        for p in procs:
            p.start()
        time.sleep(1.0)
        start.set()
        done = [results.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    n = processes * threads * appends
    cpu, wall, fsyncs = sum(d[0] for d in done), max(d[1] for d in done), sum(d[2] for d in done)
    return (f"{processes} process(es) x {threads} threads: {n} appends, CPU {cpu / n * 1e3:.2f} ms/append, "
            f"{n / wall:.0f} appends/s, {fsyncs} fsyncs of the log ({n / max(fsyncs, 1):.1f} appends each); "
            f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--threads", type=int, default=8, help="appending threads per process")
    parser.add_argument("--appends", type=int, default=30, help="appends per thread")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="checkout (for data)")
    args = parser.parse_args()
    work = _decisions(args.root)
    for _ in range(args.rounds):
        for processes in (int(p) for p in args.processes.split(",")):
            print(measure(work, processes, args.threads, args.appends), flush=True)


if __name__ == "__main__":
    main()
