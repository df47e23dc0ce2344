"""Population benchmark: patients/s on local processes and a Dask LocalCluster, against one in-memory process.

    python tests/perf/bench_population.py [--n 10000] [--repeat 3] [--trace] [--backend durable|reference]
    python tests/perf/bench_population.py --io-only --repeat 11   # the I/O overhead alone, more rounds
    python tests/perf/bench_population.py --n 2000 --profile     # where one in-process run spends its time
    python tests/perf/bench_population.py --n 300 --instructions # I/O overhead in instructions (callgrind)
    python tests/perf/bench_population.py --n 300 --instructions --stages  # ... stage by stage
    python tests/perf/bench_population.py --n 2000 --stages --repeat 7   # the same stages, CPU time

Variants, each over the same generated patients (facts NDJSON on disk), measured
in interleaved rounds; per variant the median over rounds is printed, with its ratio
to the baseline of the same round:
  in-memory, 1 process   Engine.evaluate(...).to_dict() over documents parsed beforehand:
                         the whole result documents a run writes, built in memory,
                         nothing read or written (the baseline)
  run, in process        neurocds population run --workers 0, in the same process as the
                         baseline and with its engine: read NDJSON, evaluate, write results
                         NDJSON + Parquet + errors + summary
                         (both run in a helper process started beforehand, not in this one,
                         whose LocalCluster scheduler and client threads would share their GIL)
  run, 1 process         --workers 1: one spawned worker process (its start and engine start included)
  run, 2 processes       --workers 2
  LocalCluster, 2        a running 2-worker Dask LocalCluster (processes), started once
                         outside the timing; its start time is printed separately
  in-memory, 2 processes the baseline's loop split over two processes started (engines built,
                         documents parsed) before the timing: what this machine allows two
                         processes at that moment, the ceiling for the parallel variants
Figures, as issue 16 defines them:
  I/O overhead           (run time in process - in-memory time) / in-memory time, per round, median
  parallel efficiency    rate(2 processes) / (2 x rate(1 process)), per round, median; also against
                         the in-process run (no process start at all: the stricter figure)
--instructions counts user-space instructions with valgrind's callgrind, which load
does not move: the same N documents evaluated in memory, run in process, and neither
(the setup both share), so the I/O overhead is (run - setup) / (in-memory - setup) - 1.
The kernel's share of writing (page cache copies) is not counted there: the CPU time
figures below include it.
CPU milliseconds per patient (this process and its finished workers) are printed
too: unlike rates they hardly move when neighbours load the machine, so the I/O
overhead is also given by CPU time. The load average is printed before and after
each round: on a shared machine the parallel figures say more about the neighbours
than about the code.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared document helpers
from population.helpers import NOW, facts_ndjson

from neurocds.population import RunSettings, process_engine, run_population


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (pool workers end with their run)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


_WORKER: dict[str, Any] = {}


def _load_worker(source: str, settings: RunSettings, barrier: Any) -> None:
    """Pool initialiser: this process's engine and every document parsed, before any timing.

    The in-process variants run in such a process too, not in the benchmark's own, which
    hosts the LocalCluster's scheduler and client threads: they would share its GIL.
    """
    _WORKER["engine"] = engine = process_engine(settings)  # the run in process uses the same engine
    lines = Path(source).read_bytes().splitlines(keepends=True)
    _WORKER["docs"] = [json.loads(line) for line in lines]
    _WORKER["source"], _WORKER["settings"], _WORKER["barrier"] = source, settings, barrier
    # Warm, as a long-running process is: a small run (pyarrow's import and first writer, lazy
    # imports, the part files' first use) and a few evaluations, so that no measured round pays
    # a first use the other variant does not.
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as warm:
        (Path(warm) / "warm.ndjson").write_bytes(b"".join(lines[:50]))
        run_population([Path(warm) / "warm.ndjson"], Path(warm) / "out", settings, workers=0)
    for doc in _WORKER["docs"][:50]:
        engine.evaluate(doc, trace=settings.trace).to_dict()


def _evaluate_half(which: int) -> tuple[float, float]:
    _WORKER["barrier"].wait()  # both processes ready: start together
    started = time.time()
    for doc in _WORKER["docs"][which::2]:
        _WORKER["engine"].evaluate(doc, trace=_WORKER["settings"].trace).to_dict()
    return started, time.time()


def _kernel_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def _solo_in_memory() -> tuple[float, float, float]:
    """The baseline, timed where it runs: (seconds, CPU seconds of the whole process, of which in the kernel)."""
    gc.collect()  # neither variant pays for the garbage the other left
    started, cpu, kernel = time.perf_counter(), time.process_time(), _kernel_seconds()
    for doc in _WORKER["docs"]:
        _WORKER["engine"].evaluate(doc, trace=_WORKER["settings"].trace).to_dict()
    return time.perf_counter() - started, time.process_time() - cpu, _kernel_seconds() - kernel


def _solo_run(out: str) -> tuple[float, float, float]:
    """``population run --workers 0`` in the same process as the baseline, timed there."""
    gc.collect()
    started, cpu, kernel = time.perf_counter(), time.process_time(), _kernel_seconds()
    run_population([_WORKER["source"]], out, _WORKER["settings"], workers=0)
    measured = time.perf_counter() - started, time.process_time() - cpu, _kernel_seconds() - kernel
    shutil.rmtree(out)
    return measured


# --instructions --stages: cumulative workloads over the same lines, each adding one stage of
# what a run does per patient; a stage's count is its workload's minus the previous one's.
STAGES = {
    "in-memory": "baseline: Engine.evaluate(parsed doc).to_dict()",
    "parse": "strict parse + validation of the line (against the baseline's validation of a dict)",
    "encode": "orjson encoding of the result line",
    "hash": "per-patient SHA-256 over the line's stable spans",
    "partition": "records, result lines written to their part (user space), tallies, Parquet rows",
    "run": "run level: plan and input hashes, Parquet parts, markers, merge, summary",
}


def instruction_workload(source: Path, work: Path, what: str, trace: bool, backend: str | None) -> None:
    """What callgrind counts: the same setup, then one workload (``STAGES``, or nothing: "setup")."""
    settings = RunSettings(now=NOW, trace=trace, backend=backend, partition_size=100)
    lines = source.read_bytes().splitlines(keepends=True)
    docs = [json.loads(line) for line in lines]
    process_engine(settings)
    # Every variant first runs a small population (lazy imports, pyarrow's first writer, caches):
    # what is left is the cost per patient, not the first run's.
    warm = work / "warm.ndjson"
    warm.write_bytes(b"".join(lines[:20]))
    run_population([warm], work / "warm", settings, workers=0)
    if what != "setup":
        stage_workload(what, source, lines, docs, settings, work)


def stage_workload(
    what: str, source: Path, lines: list[bytes], docs: list[Any], settings: RunSettings, work: Path
) -> None:
    """One of ``STAGES`` over every patient, with this process's engine (callgrind counts it; ``--stages`` times it)."""
    from neurocds.facts.patient import patient_id_of
    from neurocds.population import InputRecord, evaluate_partition
    from neurocds.population.partition import _result_line, dumps_line

    engine, trace = process_engine(settings), settings.trace
    if what == "in-memory":
        for doc in docs:
            engine.evaluate(doc, trace=trace).to_dict()
    elif what in ("parse", "encode", "hash"):
        for number, line in enumerate(lines, start=1):
            facts = engine.validator.parse_valid(line)
            result = engine.evaluate(facts, trace=trace).to_dict()
            if what == "encode":
                dumps_line({"patient_id": patient_id_of(facts), "source": f"{source}:{number}", "result": result})
            elif what == "hash":
                _result_line(patient_id_of(facts), f"{source}:{number}", result)
    elif what == "partition":
        records = (InputRecord(f"{source}:{n}", "facts", line) for n, line in enumerate(lines, start=1))
        with open(work / "part.ndjson", "wb") as fh:
            evaluate_partition(records, settings, engine=engine, sink=fh.write)
        os.unlink(work / "part.ndjson")
    elif what == "run":
        run_population([source], work / "counted", settings, workers=0)
        shutil.rmtree(work / "counted")
    else:
        raise SystemExit(f"unknown workload {what!r}")


def time_stages(source: Path, work: Path, settings: RunSettings, n: int, repeat: int) -> None:
    """The same cumulative stages as ``--instructions --stages``, timed on this CPU (its SHA
    extensions, the kernel's writing and cache effects included, which callgrind does not see),
    in interleaved rounds, each stage's order rotating; CPU time of this process, medians."""
    lines = source.read_bytes().splitlines(keepends=True)
    docs = [json.loads(line) for line in lines]
    for what in STAGES:  # warm: first uses belong to no stage
        stage_workload(what, source, lines[:50], docs[:50], settings, work)
    cpu: dict[str, list[float]] = {what: [] for what in STAGES}
    for round_no in range(repeat):
        order = list(STAGES)[round_no % len(STAGES) :] + list(STAGES)[: round_no % len(STAGES)]
        for what in order:
            gc.collect()
            started = time.process_time()
            stage_workload(what, source, lines, docs, settings, work)
            cpu[what].append((time.process_time() - started) * 1e6 / n)
        figures = ", ".join(f"{w} {cpu[w][-1]:.0f}" for w in STAGES)
        print(f"round {round_no + 1}: {figures} us/patient ({load()})")
    median = {what: statistics.median(values) for what, values in cpu.items()}
    evaluate = median["in-memory"]
    print(f"{n} patients, CPU microseconds per patient (medians of {repeat} rounds):")
    print(f"  in-memory (evaluate + to_dict)  {evaluate:8.1f}")
    print(f"  run in process                  {median['run']:8.1f}")
    print("  what the run adds, by stage (difference of medians of cumulative workloads; noisy under load):")
    for before, what in itertools.pairwise(STAGES):
        added = median[what] - median[before]
        print(f"    {what:10s} {added:+8.1f}  {added / evaluate:+7.1%}  {STAGES[what]}")
    print(f"I/O overhead by CPU time: {median['run'] / evaluate - 1:.1%} of evaluation")


def count_instructions(source: Path, work: Path, args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from count_instructions import callgrind_count  # the one callgrind runner of tests/perf

    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    workloads = ["setup", *(STAGES if args.stages else ("in-memory", "run"))]

    def count(what: str) -> int:
        folder = work / what  # each workload its own folder: two run at once
        folder.mkdir()
        command = [sys.executable, __file__, "--workload", what, "--source", str(source), "--work", str(folder)]
        command += ["--trace"] if args.trace else []
        command += ["--backend", args.backend] if args.backend else []
        try:
            return callgrind_count(command)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    with ThreadPoolExecutor(2) as pool:  # counts do not depend on what else runs
        counts = dict(zip(workloads, pool.map(count, workloads), strict=True))
    setup = counts["setup"]
    evaluate, run = counts["in-memory"] - setup, counts["run"] - setup
    print(f"{args.n} patients, callgrind, user-space instructions per patient:")
    print(f"  in-memory (evaluate + to_dict)  {evaluate / args.n:14,.0f}")
    print(f"  run in process                  {run / args.n:14,.0f}")
    if args.stages:
        print("  what the run adds, by stage (each workload adds one stage to the one before):")
        previous = evaluate
        for what in list(STAGES)[1:]:
            added = counts[what] - setup - previous
            previous += added
            print(f"    {what:10s} {added / args.n:+12,.0f}  {added / evaluate:+7.1%}  {STAGES[what]}")
    print(f"I/O overhead by instructions: {run / evaluate - 1:.1%} of evaluation (kernel time not counted)")


def profile(source: Path, work: Path, settings: RunSettings, n: int) -> None:
    """One in-process run under cProfile: seconds per stage, per patient, and the top functions."""
    import cProfile
    import pstats

    process_engine(settings)  # built outside, as the baseline's engine is
    profiler = cProfile.Profile()
    profiler.enable()
    run_population([source], work / "profiled", settings, workers=0)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stages = {
        "read_partition (read NDJSON lines)": ("sources.py", "_read_ndjson"),
        "parse_valid (strict parse + validation)": ("validation.py", "parse_valid"),
        "Engine.evaluate (rules)": ("engine.py", "evaluate"),
        "Result.to_dict (missing data, trace)": ("result.py", "to_dict"),
        "_result_line (orjson line, its SHA-256)": ("partition.py", "_result_line"),
        "result lines written to their part": ("~", "<method 'write' of '_io.BufferedWriter' objects>"),
        "write_partition (errors, Parquet, marker)": ("output.py", "write_partition"),
        "merge (join parts, count lines, Parquet)": ("output.py", "merge"),
        "plan_partitions (scan, hash inputs)": ("sources.py", "plan_partitions"),
    }
    total = sum(tt for (_, _, tt, _, _) in stats.stats.values())  # type: ignore[attr-defined]  # pstats internals
    print(f"profiled run in process: {total:.2f} s of CPU for {n} patients (profiler overhead included)")
    for label, (filename, func) in stages.items():
        cumulative = sum(
            ct
            for (path, _, name), (_, _, _, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
            if path.endswith(filename) and name == func
        )
        print(f"  {label:44s} {cumulative * 1000 / n:6.3f} ms/patient  {cumulative / total:5.1%}")
    stats.sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trace", action="store_true", help="write whole results with their trace (~40 KB each)")
    parser.add_argument("--backend", choices=["durable", "reference"], default=None)
    parser.add_argument("--profile", action="store_true", help="profile one in-process run instead")
    parser.add_argument(
        "--io-only", action="store_true", help="only the baseline and the run in process (more rounds, same time)"
    )
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument(
        "--stages", action="store_true", help="what each stage of a run adds, timed (with --instructions: counted)"
    )
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload:
        instruction_workload(Path(args.source), Path(args.work), args.workload, args.trace, args.backend)
        return
    import distributed

    work = Path(tempfile.mkdtemp(prefix="bench-population-"))
    try:
        source = work / "patients.ndjson"
        facts_ndjson(source, args.n, bad=False)
        settings = RunSettings(now=NOW, trace=args.trace, backend=args.backend, partition_size=500)
        if args.profile:
            profile(source, work, settings, args.n)
            return
        if args.instructions:
            count_instructions(source, work, args)
            return
        if args.stages:
            time_stages(source, work, settings, args.n, args.repeat)
            return
        print(f"{args.n} patients, backend {args.backend or 'default'}, trace {'on' if args.trace else 'off'}")
        print(f"{os.cpu_count()} CPUs; before: {load()}")
        context = multiprocessing.get_context("spawn")
        solo = context.Pool(1, _load_worker, (str(source), settings, None))
        if not args.io_only:
            halves = context.Pool(2, _load_worker, (str(source), settings, context.Barrier(2)))
            started = time.perf_counter()
            cluster = distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
            )
            client = distributed.Client(cluster)
            print(f"LocalCluster start: {time.perf_counter() - started:.1f} s")
        runs = 0

        def run(**kw: object) -> Callable[[], tuple[float, ...] | None]:
            def go() -> tuple[float, ...] | None:
                nonlocal runs
                runs += 1
                run_population([source], work / f"out-{runs}", settings, **kw)  # type: ignore[arg-type]
                shutil.rmtree(work / f"out-{runs}")
                return None

            return go

        def in_process() -> tuple[float, ...] | None:
            nonlocal runs
            runs += 1
            measured: tuple[float, float, float] = solo.apply(_solo_run, (str(work / f"out-{runs}"),))
            return measured

        def in_memory() -> tuple[float, ...] | None:
            measured: tuple[float, float, float] = solo.apply(_solo_in_memory)
            return measured

        def in_memory_two() -> tuple[float, ...] | None:
            halves.map(_evaluate_half, [0, 1], chunksize=1)
            return None

        base, solo_run = "in-memory, 1 process", "run, in process"
        variants = {base: in_memory, solo_run: in_process}
        if not args.io_only:
            variants.update(
                {
                    "run, 1 process": run(workers=1),
                    "run, 2 processes": run(workers=2),
                    "LocalCluster, 2": run(client=client),
                    "in-memory, 2 processes": in_memory_two,
                }
            )
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        cpu_ms: dict[str, list[float]] = {name: [] for name in variants}
        kernel_ms: dict[str, list[float]] = {base: [], solo_run: []}  # of cpu_ms, in the kernel (the solo pair)
        for round_no in range(1, args.repeat + 1):
            before = load()
            order = list(variants)
            if round_no % 2 == 0:  # baseline and run in process back to back, in turn first: a drift favours neither
                order[0], order[1] = order[1], order[0]
            for name in order:
                func = variants[name]
                start, cpu = time.perf_counter(), cpu_seconds()
                inside = func()  # (seconds, CPU seconds, of which kernel) where the variant measured itself
                wall, used, *kernel = inside or (time.perf_counter() - start, cpu_seconds() - cpu)
                seconds[name].append(wall)
                cpu_ms[name].append(used * 1000 / args.n)
                if kernel:
                    kernel_ms[name].append(kernel[0] * 1000 / args.n)
            line = ", ".join(f"{name} {args.n / seconds[name][-1]:.0f}/s" for name in variants)
            overheads = (
                f"I/O overhead {seconds[solo_run][-1] / seconds[base][-1] - 1:+.0%} wall, "
                f"{cpu_ms[solo_run][-1] / cpu_ms[base][-1] - 1:+.0%} CPU "
                f"({cpu_ms[base][-1]:.3f} against {cpu_ms[solo_run][-1]:.3f} ms/patient, of which kernel "
                f"{kernel_ms[base][-1]:.3f} and {kernel_ms[solo_run][-1]:.3f})"
            )
            print(f"round {round_no}: {line}; {overheads} ({before} before, {load()} after)")

        def median_of(figure: Callable[[int], float]) -> float:
            return statistics.median(figure(i) for i in range(args.repeat))

        for name in variants:
            rates = [args.n / s for s in seconds[name]]
            spread = f"(rounds {min(rates):.0f}-{max(rates):.0f})" if args.repeat > 1 else ""
            # Dask workers and the ceiling's pool outlive the variant, so their CPU time is not counted here.
            counted = "Cluster" not in name and name != "in-memory, 2 processes"
            cpu_text = f"{statistics.median(cpu_ms[name]):5.2f} CPU ms/patient" if counted else ""
            ratio = median_of(lambda i, name=name: seconds[base][i] / seconds[name][i])  # type: ignore[misc]
            rate = statistics.median(rates)
            print(f"{name:22s} {rate:7.0f} patients/s {spread:22s} x{ratio:.2f} of in-memory  {cpu_text}")

        def efficiency(parallel: str, single: str) -> float:
            return median_of(lambda i: seconds[single][i] / (2 * seconds[parallel][i]))

        if not args.io_only:
            two, cluster_2 = (efficiency(v, "run, 1 process") for v in ("run, 2 processes", "LocalCluster, 2"))
            print(
                f"parallel efficiency, rate(2) / (2 x rate(1 process)): 2 processes {two:.0%}, "
                f"LocalCluster {cluster_2:.0%}; "
                f"2 processes against the in-process run: {efficiency('run, 2 processes', solo_run):.0%}"
            )
            print(
                f"ceiling, in-memory 2 processes / (2 x in-memory 1 process): "
                f"{efficiency('in-memory, 2 processes', base):.0%} (what the machine gave two processes meanwhile)"
            )
        # Per round, then the median: the two ran back to back in the same process, so a round's
        # ratio cancels what the neighbours did to that round (the ratio of medians would not).
        overhead = median_of(lambda i: seconds[solo_run][i] / seconds[base][i] - 1)
        print(f"I/O overhead, (run in process - in-memory) / in-memory: {overhead:.0%} by wall clock")
        cpu_overhead = median_of(lambda i: cpu_ms[solo_run][i] / cpu_ms[base][i] - 1)
        one_worker = (
            ""
            if args.io_only
            else f", {median_of(lambda i: cpu_ms['run, 1 process'][i] / cpu_ms[base][i] - 1):.0%} with one worker "
            "process (its start included)"
        )
        print(f"I/O overhead by CPU time (steadier under load): {cpu_overhead:.0%} in process{one_worker}")
        kernel_added = median_of(lambda i: (kernel_ms[solo_run][i] - kernel_ms[base][i]) / cpu_ms[base][i])
        print(f"  of which kernel time (writing the parts, mapping them to count lines): {kernel_added:.0%}")
        print(f"after: {load()}")
        if not args.io_only:
            client.close()
            cluster.close()
            halves.close()
            halves.join()
        solo.close()
        solo.join()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
