"""CDS Hooks service load benchmark: requests/s, latency and CPU per request, by workers and clients.

    python tests/perf/bench_cdshooks.py [--requests 400] [--concurrency 1,4,16] [--workers 1,2]
                                        [--rounds 3] [--insecure] [--audit] [--before PYTHON]

Starts the real service (``neurocds serve``, uvicorn, ``--workers N``, all installed
packs) in a subprocess on 127.0.0.1 for each worker count, all before measuring, then
in ``--rounds`` rounds alternating between them (so other load on the machine falls on
each alike; the ratio is the median over rounds), for each concurrency drives each
with that many clients, each on its own keep-alive connection, until ``--requests``
calls have completed (or ``--max-seconds`` passed). The clients are asyncio
coroutines in one thread sending pre-built requests, so the load generator costs
little of the CPU the server needs (it shares the machine). Every call is a
patient-view hook whose prefetch is built from one of the Synthea bundles in
/work/shared/data/synthea, as an EHR would answer the discovery templates.
By default the server is secured and every call carries a fresh ES384 JWT
(signed before timing starts), so signature checks and the shared replay cache are
in the measured path; ``--insecure`` measures without them. ``--audit`` serves with
``--audit-dir`` (a fresh folder per worker count): every call then appends and
fsyncs its decision and cards.

CPU: the server's CPU time (all its processes, from /proc) per request, beside the
same work done in this process without a server (strict parse, FHIR -> facts,
evaluate: its CPU time per request). Their difference is the service's own cost
(HTTP, JWT, replay check, cards, audit append), printed as a ratio to the evaluation's.
CPU time is far less disturbed than wall time by other load on the machine; the
load average is printed with the figures.

Before and after in one run: ``--before PYTHON`` also starts every worker count with
another interpreter (the venv of a checkout of the commit to compare with, e.g. made
by ``git worktree add`` and ``pip install -e``), measured in the same alternating
rounds; the summary gives each server's requests/s and CPU per request against it.

``--count-parse N`` instead counts, with callgrind, the instructions the strict parser
(``parse_strict`` with the service's limits, which every call's body goes through) takes
per body over N passes of the same bodies: repeatable where the machine's load makes
timings drift.

Synthea's records end years ago, so with the default 30-day observation window
every lab would be stale and every answer a missing-data card. The server is
started with ``--observation-window-days`` (default here 36500) so the latest
labs count and the rules really evaluate them; the output counts the cards that
are findings, not notices, to show it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neurocds_packs import BUILTIN_PACKS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "perf"))

from cdshooks.support import (  # noqa: E402 (after the path set-up)
    EHR_ISSUER,
    SYNTHEA_DATA,
    hook_request,
    make_keys,
    serve_process,
    synthea_prefetch,
)

SERVICE = "/cds-services/neurocds-patient-view"
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 60.0
WARMUP = 20
NOTICE_TOPICS = ("missing-data", "incomplete")  # cards that are not findings


@dataclass
class Level:
    workers: int
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    sample: list[bytes] = field(default_factory=list)  # response bodies, parsed after timing
    wall: float = 0.0
    server_cpu: float = 0.0  # seconds, all server processes


def bodies(limit_bytes: int) -> list[bytes]:
    out = []
    for path in sorted(SYNTHEA_DATA.glob("*.json")):
        try:
            patient_id, prefetch = synthea_prefetch(path.name)
        except (StopIteration, KeyError):
            continue  # not a patient bundle
        body = json.dumps(hook_request("patient-view", patient_id, prefetch)).encode()
        if len(body) <= limit_bytes:
            out.append(body)
    if not out:
        raise SystemExit(f"no Synthea bundle under {limit_bytes} bytes in {SYNTHEA_DATA}")
    return out


def request_bytes(port: int, body: bytes, token: str | None) -> bytes:
    """One whole HTTP/1.1 request, built before timing starts."""
    head = [f"POST {SERVICE} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]  # fmt: skip
    if token is not None:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def run_level(port: int, workers: int, concurrency: int, requests: list[bytes], max_seconds: float,
              server_pid: int | None = None) -> Level:  # fmt: skip
    """``concurrency`` keep-alive clients (coroutines) share ``requests`` until all are answered."""
    level = Level(workers, concurrency)
    pending = iter(range(len(requests)))
    deadline = time.monotonic() + max_seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in pending:
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                try:
                    status, data = await asyncio.wait_for(_exchange(reader, writer, requests[i]), REQUEST_TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, TimeoutError):
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    status, data = 0, b""
                if status == 200:
                    level.latencies.append(time.perf_counter() - start)
                    if len(level.sample) < 64:
                        level.sample.append(data)
                else:
                    level.errors[status] = level.errors.get(status, 0) + 1
        finally:
            writer.close()

    async def all_clients() -> None:
        await asyncio.gather(*(client() for _ in range(concurrency)))

    cpu_before = server_cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    asyncio.run(all_clients())
    level.wall = time.perf_counter() - started
    level.server_cpu = (server_cpu_seconds(server_pid) if server_pid else 0.0) - cpu_before
    return level


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and every process below it (the workers), from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, family = 0.0, {pid}
    for proc in sorted(parents):  # children have larger pids than their parent, almost always
        if proc in family or parents[proc] in family:
            family.add(proc)
            total += times[proc]
    return total


def in_process_baseline(payloads: list[bytes], window_days: float, rounds: int = 2) -> tuple[float, float]:
    """Median wall ms and mean CPU ms for the same work without HTTP or JWT: strict parse, FHIR -> facts,
    evaluate."""
    from neurocds import Engine
    from neurocds.fhir import FhirConverter

    engine = Engine(packs=BUILTIN_PACKS)
    # Built once, as the service does (it loads the mapping tables); the same window as the server.
    converter = FhirConverter(observation_window_days=window_days)
    limits = service_limits()
    times = []
    cpu_start = time.process_time()
    for _ in range(rounds):
        for body in payloads:
            start = time.perf_counter()
            engine.evaluate(call_facts(converter, body, limits))
            times.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / len(times)
    return statistics.median(times) * 1e3, cpu * 1e3


def service_limits() -> Any:
    """The limits the service parses a call body with (size and depth only)."""
    from neurocds.cdshooks.app import MAX_JSON_DEPTH
    from neurocds.cdshooks.config import DEFAULT_MAX_BODY_BYTES
    from neurocds.facts.strictjson import fhir_limits

    return fhir_limits(DEFAULT_MAX_BODY_BYTES, MAX_JSON_DEPTH)


def call_facts(converter: Any, body: bytes, limits: Any) -> dict[str, Any]:
    """A call body parsed as the service parses it, its prefetch converted to facts."""
    from neurocds.facts.strictjson import parse_strict

    request = parse_strict(body, limits)
    converted = converter.convert_prefetch(request["prefetch"], patient_id=request["context"]["patientId"])
    facts: dict[str, Any] = converted.facts
    return facts


def parse_workload(passes: int) -> None:
    """What ``--count-parse`` runs under callgrind: the bodies built, then parsed ``passes`` times
    with the limits the service parses a call with (size and depth only)."""
    from neurocds.facts.strictjson import parse_strict

    payloads = bodies(1_048_576)
    limits = service_limits()
    parse_strict(payloads[0], limits)  # first use (lazy imports) in both runs alike
    for _ in range(passes):
        for body in payloads:
            parse_strict(body, limits)


def count_parse(passes: int) -> None:
    from count_instructions import callgrind_count  # the one callgrind runner of tests/perf

    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed")
    command = [sys.executable, __file__, "--parse-workload"]
    built = callgrind_count([*command, "0"])  # the same bodies built, none parsed
    parsed = callgrind_count([*command, str(passes)])
    count = len(bodies(1_048_576)) * passes
    print(f"parse_strict: {(parsed - built) / count:,.0f} instructions per call body ({count} parses, callgrind)")


def report(level: Level, baseline_ms: float, baseline_cpu_ms: float) -> float:
    """Print one line; returns requests/s."""
    lat = sorted(level.latencies)
    if not lat:
        print(f"w={level.workers} c={level.concurrency:3d}  no successful requests; errors {level.errors}")
        return 0.0
    p50 = statistics.median(lat) * 1e3
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)] * 1e3
    rate = len(lat) / level.wall
    cards = [json.loads(b)["cards"] for b in level.sample]
    findings = statistics.mean(sum(c["source"]["topic"]["code"] not in NOTICE_TOPICS for c in cs) for cs in cards)
    cpu = level.server_cpu / len(lat) * 1e3
    own = cpu - baseline_cpu_ms
    errors = f"  errors {level.errors}" if level.errors else ""
    print(
        f"w={level.workers} c={level.concurrency:3d}  {len(lat):5d} ok  {rate:7.1f} req/s  p50 {p50:7.1f} ms"
        f"  p99 {p99:7.1f} ms  ({p50 / baseline_ms:.1f}x in-process p50)  server CPU {cpu:5.1f} ms/req, own"
        f" {own:5.1f} ms = {own / baseline_cpu_ms:.2f}x evaluation"
        f"  cards/resp {statistics.mean(len(c) for c in cards):.1f} (findings {findings:.1f}){errors}"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts")
    parser.add_argument("--workers", default="1", help="comma-separated worker process counts (serve --workers)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the worker counts")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap per level")
    parser.add_argument("--max-body", type=int, default=1_048_576)
    parser.add_argument("--insecure", action="store_true", help="no JWT (measure without signature checks)")
    parser.add_argument("--audit", action="store_true", help="serve with --audit-dir (fsynced records per call)")
    parser.add_argument("--before", metavar="PYTHON", help="also serve with this interpreter (a baseline venv)")
    parser.add_argument(
        "--window-days", type=float, default=36500.0, help="server's --observation-window-days (labs must count)"
    )
    parser.add_argument("--count-parse", type=int, metavar="N", help="count parse_strict instructions over N passes")
    parser.add_argument("--parse-workload", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.parse_workload is not None:
        parse_workload(opts.parse_workload)
        return
    if opts.count_parse is not None:
        count_parse(opts.count_parse)
        return
    levels = [int(c) for c in opts.concurrency.split(",")]
    worker_counts = [int(w) for w in opts.workers.split(",")]

    payloads = bodies(opts.max_body)
    sizes = sorted(len(p) for p in payloads)
    print(
        f"{len(payloads)} Synthea prefetch bodies, {sizes[0] // 1024}-{sizes[-1] // 1024} KiB (median "
        f"{statistics.median(sizes) / 1024:.0f} KiB); {os.cpu_count()} CPUs; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    baseline, baseline_cpu = in_process_baseline(payloads, opts.window_days)
    print(f"baseline, same bodies in process (parse + FHIR + evaluate, no HTTP/JWT): p50 {baseline:.1f} ms,"
          f" CPU {baseline_cpu:.1f} ms/req")  # fmt: skip
    print(f"server: audit {'ON (fsync per call)' if opts.audit else 'off'}, JWT {'off' if opts.insecure else 'ES384'}")
    if max(worker_counts) > 1 and not (opts.audit or opts.insecure):
        raise SystemExit("--workers above 1 with JWT checks needs --audit (the workers share the replay cache "
                         "beside the audit log), or --insecure")  # fmt: skip
    rates: dict[tuple[str, int, int], list[float]] = {}
    cpus: dict[tuple[str, int, int], list[float]] = {}
    builds = [("after", None)] + ([("before", opts.before)] if opts.before else [])
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        keys = None if opts.insecure else make_keys(Path(tmp))
        servers = {}
        # Every server is up before any is measured, and the rounds alternate between them, so a
        # change in the machine's other load during the run falls on all of them alike.
        for label, python in builds:
            for workers in worker_counts:
                args = ["--insecure-dev"] if keys is None else ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}"]
                args += ["--observation-window-days", str(opts.window_days)]
                if opts.audit:
                    args += ["--audit-dir", str(Path(tmp) / f"audit-{label}-{workers}")]
                # Info level for every worker count alike: it is how the harness sees each worker start.
                served = serve_process(args, log_level="info", start_timeout=START_TIMEOUT, workers=workers,
                                       python=python)  # fmt: skip
                servers[(label, workers)] = stack.enter_context(served)
        for round_ in range(opts.rounds):
            for concurrency in levels:
                for (label, workers), served in servers.items():
                    base = f"http://127.0.0.1:{served.port}"
                    total = WARMUP + opts.requests
                    # Signed now, so every token is fresh; a token lives 5 minutes, longer than a level's cap.
                    now = datetime.now(UTC)
                    tokens = [keys.token(base + SERVICE, now=now) if keys else None for _ in range(total)]
                    calls = [request_bytes(served.port, payloads[i % len(payloads)], t) for i, t in enumerate(tokens)]
                    run_level(served.port, workers, concurrency, calls[:WARMUP], opts.max_seconds)
                    level = run_level(served.port, workers, concurrency, calls[WARMUP:], opts.max_seconds,
                                      served.proc.pid)  # fmt: skip
                    print(f"round {round_ + 1}{' ' + label if opts.before else ''}: ", end="")
                    rates.setdefault((label, workers, concurrency), []).append(report(level, baseline, baseline_cpu))
                    cpus.setdefault((label, workers, concurrency), []).append(
                        level.server_cpu / max(1, len(level.latencies)) * 1e3
                    )
    for label, _ in builds:
        for concurrency in levels:
            one = rates.get((label, 1, concurrency))
            for workers in worker_counts:
                if workers > 1 and one and (label, workers, concurrency) in rates:
                    ratios = [w / o for w, o in zip(rates[(label, workers, concurrency)], one, strict=True) if o]
                    print(f"{label + ': ' if opts.before else ''}c={concurrency}: {workers} workers give "
                          f"{statistics.median(ratios):.2f}x the requests/s of 1 (median of {len(ratios)} rounds: "
                          f"{', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
    if opts.before:
        for concurrency in levels:
            for workers in worker_counts:
                after, before = rates[("after", workers, concurrency)], rates[("before", workers, concurrency)]
                speed = [a / b for a, b in zip(after, before, strict=True) if b]
                cpu_after = statistics.median(cpus[("after", workers, concurrency)])
                cpu_before = statistics.median(cpus[("before", workers, concurrency)])
                print(f"after vs before, w={workers} c={concurrency}: {statistics.median(speed):.2f}x the requests/s"
                      f" (rounds: {', '.join(f'{r:.2f}' for r in speed)}); server CPU {cpu_after:.2f} vs"
                      f" {cpu_before:.2f} ms/req (median)")  # fmt: skip
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
