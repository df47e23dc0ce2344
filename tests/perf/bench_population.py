"""Population benchmark: patients/s on local processes and a Dask LocalCluster, against one in-memory process.

    python tests/perf/bench_population.py [--n 10000] [--repeat 3] [--trace] [--backend durable|reference]

Variants, each over the same generated patients (facts NDJSON on disk), measured
in interleaved rounds; per variant the median over rounds is printed, with its ratio
to the baseline of the same round:
  in-memory, 1 process   Engine.evaluate over parsed documents, no I/O (the baseline)
  run, in process        neurocds population run --workers 0: read NDJSON, evaluate,
                         write results NDJSON + Parquet + summary (I/O overhead = 1 - its ratio)
  run, 1 process         --workers 1: one spawned worker process (engine start included)
  run, 2 processes       --workers 2 (parallel efficiency = rate / (2 x the 1-process rate))
  LocalCluster, 2        a running 2-worker Dask LocalCluster (processes), started once
                         outside the timing; its start time is printed separately
CPU milliseconds per patient (this process and its finished workers) are printed
too: unlike rates they hardly move when neighbours load the machine, so the I/O
overhead is also given by CPU time. Machine load (``uptime``) is printed before and after: on a shared machine the
parallel figures say more about the neighbours than about the code.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared document helpers
from population.helpers import NOW, facts_ndjson

from neurocds import Engine
from neurocds.population import RunSettings, run_population


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (pool workers end with their run)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="write whole results with their trace (~40 KB each)")
    parser.add_argument("--backend", choices=["durable", "reference"], default=None)
    args = parser.parse_args()
    import distributed

    work = Path(tempfile.mkdtemp(prefix="bench-population-"))
    try:
        source = work / "patients.ndjson"
        facts_ndjson(source, args.n, bad=False)
        docs = source.read_bytes().splitlines()
        settings = RunSettings(now=NOW, trace=args.trace, backend=args.backend, partition_size=500)
        print(f"{args.n} patients, backend {args.backend or 'default'}, trace {'on' if args.trace else 'off'}")
        print(f"load before: {uptime()}")
        engine = Engine(**settings.engine_kwargs())
        started = time.perf_counter()
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        )
        client = distributed.Client(cluster)
        print(f"LocalCluster start: {time.perf_counter() - started:.1f} s")
        runs = 0

        def run(**kw: object) -> Callable[[], None]:
            def go() -> None:
                nonlocal runs
                runs += 1
                run_population([source], work / f"out-{runs}", settings, **kw)  # type: ignore[arg-type]
                shutil.rmtree(work / f"out-{runs}")

            return go

        def in_memory() -> None:
            for doc in docs:
                engine.evaluate(doc, trace=args.trace)

        variants = {
            "in-memory, 1 process": in_memory,
            "run, in process": run(workers=0),
            "run, 1 process": run(workers=1),
            "run, 2 processes": run(workers=2),
            "LocalCluster, 2": run(client=client),
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        ratios: dict[str, list[float]] = {name: [] for name in variants}
        cpu_ms: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, func in variants.items():
                start, cpu = time.perf_counter(), cpu_seconds()
                func()
                rates[name].append(args.n / (time.perf_counter() - start))
                cpu_ms[name].append((cpu_seconds() - cpu) * 1000 / args.n)
            for name in variants:
                ratios[name].append(rates[name][-1] / rates["in-memory, 1 process"][-1])
        for name in variants:
            spread = f"(rounds {min(rates[name]):.0f}-{max(rates[name]):.0f})" if args.repeat > 1 else ""
            # Dask workers outlive the run, so their CPU time is not counted here.
            cpu = f"{statistics.median(cpu_ms[name]):5.2f} CPU ms/patient" if "Cluster" not in name else ""
            print(
                f"{name:22s} {statistics.median(rates[name]):7.0f} patients/s {spread:22s} "
                f"x{statistics.median(ratios[name]):.2f} of in-memory  {cpu}"
            )
        one = statistics.median(rates["run, 1 process"])
        print(
            f"parallel efficiency, 2 processes: {statistics.median(rates['run, 2 processes']) / (2 * one):.0%}; "
            f"LocalCluster: {statistics.median(rates['LocalCluster, 2']) / (2 * one):.0%}"
        )
        print(f"I/O overhead in process: {1 / statistics.median(ratios['run, in process']) - 1:.0%} of evaluation time")
        base = statistics.median(cpu_ms["in-memory, 1 process"])
        print(
            f"I/O overhead by CPU time (steadier under load): "
            f"{statistics.median(cpu_ms['run, in process']) / base - 1:.0%} in process, "
            f"{statistics.median(cpu_ms['run, 1 process']) / base - 1:.0%} with one worker process (its start included)"
        )
        print(f"load after: {uptime()}")
        client.close()
        cluster.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
