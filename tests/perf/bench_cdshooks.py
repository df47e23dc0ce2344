"""CDS Hooks service load benchmark: requests/s and p50/p99 latency per client concurrency.

    python tests/perf/bench_cdshooks.py [--requests 400] [--concurrency 1,4,16] [--insecure] [--audit]

Starts the real service (``neurocds serve``, uvicorn, one worker, all installed
packs) in a subprocess on 127.0.0.1, then for each concurrency drives it with that
many client threads, each on its own keep-alive connection, until ``--requests``
calls have completed (or ``--max-seconds`` passed). Every call is a patient-view
hook whose prefetch is built from one of the Synthea bundles in
/work/shared/data/synthea, as an EHR would answer the discovery templates.
By default the server is secured and every call carries a fresh ES384 JWT
(signed before timing starts), so signature checks and the replay cache are in
the measured path; ``--insecure`` measures without them. ``--audit`` serves with
``--audit-dir`` (a fresh folder): every call then appends and fsyncs its
decision and cards.

Synthea's records end years ago, so with the default 30-day observation window
every lab would be stale and every answer a missing-data card. The server is
started with ``--observation-window-days`` (default here 36500) so the latest
labs count and the rules really evaluate them; the output counts the cards that
are findings, not notices, to show it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from neurocds_packs import BUILTIN_PACKS

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

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
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    cards: list[int] = field(default_factory=list)
    findings: list[int] = field(default_factory=list)
    wall: float = 0.0


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


def run_level(
    port: int, concurrency: int, payloads: list[bytes], tokens: list[str | None], max_seconds: float
) -> Level:
    level = Level(concurrency)
    lock = threading.Lock()
    next_index = [0]
    deadline = time.monotonic() + max_seconds

    def take() -> int | None:
        with lock:
            i = next_index[0]
            if i >= len(tokens) or time.monotonic() > deadline:
                return None
            next_index[0] += 1
            return i

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            while (i := take()) is not None:
                headers = {"Content-Type": "application/json"}
                if tokens[i] is not None:
                    headers["Authorization"] = f"Bearer {tokens[i]}"
                start = time.perf_counter()
                try:
                    conn.request("POST", SERVICE, body=payloads[i % len(payloads)], headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    status = resp.status
                except OSError:
                    conn.close()  # reconnect on the next request
                    status, data = 0, b""
                elapsed = time.perf_counter() - start
                with lock:
                    if status == 200:
                        level.latencies.append(elapsed)
                        cards = json.loads(data)["cards"]
                        level.cards.append(len(cards))
                        level.findings.append(sum(c["source"]["topic"]["code"] not in NOTICE_TOPICS for c in cards))
                    else:
                        level.errors[status] = level.errors.get(status, 0) + 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max_seconds + REQUEST_TIMEOUT)
    level.wall = time.perf_counter() - started
    return level


def in_process_baseline(payloads: list[bytes], window_days: float, rounds: int = 2) -> float:
    """Median ms for the same work without HTTP or JWT: strict parse, FHIR -> facts, evaluate."""
    from neurocds import Engine
    from neurocds.facts.strictjson import parse_strict
    from neurocds.fhir import FhirConverter

    engine = Engine(packs=BUILTIN_PACKS)
    # Built once, as the service does (it loads the mapping tables); the same window as the server.
    converter = FhirConverter(observation_window_days=window_days)
    times = []
    for _ in range(rounds):
        for body in payloads:
            start = time.perf_counter()
            request = parse_strict(body)
            facts = converter.convert_prefetch(request["prefetch"], patient_id=request["context"]["patientId"])
            engine.evaluate(facts.facts)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def report(level: Level, baseline_ms: float) -> None:
    lat = sorted(level.latencies)
    if not lat:
        print(f"c={level.concurrency:3d}  no successful requests; errors {level.errors}")
        return
    p50 = statistics.median(lat) * 1e3
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)] * 1e3
    rate = len(lat) / level.wall
    errors = f"  errors {level.errors}" if level.errors else ""
    print(
        f"c={level.concurrency:3d}  {len(lat):5d} ok  {rate:8.1f} req/s  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
        f"  max {lat[-1] * 1e3:8.1f} ms  ({p50 / baseline_ms:.1f}x in-process p50)"
        f"  cards/resp {statistics.mean(level.cards):.1f} (findings {statistics.mean(level.findings):.1f}){errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated client thread counts")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap per level")
    parser.add_argument("--max-body", type=int, default=1_048_576)
    parser.add_argument("--insecure", action="store_true", help="no JWT (measure without signature checks)")
    parser.add_argument("--audit", action="store_true", help="serve with --audit-dir (fsynced records per call)")
    parser.add_argument(
        "--window-days", type=float, default=36500.0, help="server's --observation-window-days (labs must count)"
    )
    opts = parser.parse_args()
    levels = [int(c) for c in opts.concurrency.split(",")]

    payloads = bodies(opts.max_body)
    sizes = sorted(len(p) for p in payloads)
    print(
        f"{len(payloads)} Synthea prefetch bodies, {sizes[0] // 1024}-{sizes[-1] // 1024} KiB (median "
        f"{statistics.median(sizes) / 1024:.0f} KiB); {os.cpu_count()} CPUs; server: 1 uvicorn worker"
    )
    baseline = in_process_baseline(payloads, opts.window_days)
    print(f"baseline, same bodies in process (parse + FHIR + evaluate, no HTTP/JWT): p50 {baseline:.1f} ms")
    print(f"server: audit {'ON (fsync per call)' if opts.audit else 'off'}, JWT {'off' if opts.insecure else 'ES384'}")
    with tempfile.TemporaryDirectory() as tmp:
        if opts.insecure:
            args, keys = ["--insecure-dev"], None
        else:
            keys = make_keys(Path(tmp))
            args = ["--issuer", f"{EHR_ISSUER}={keys.jwks_path}"]
        args += ["--observation-window-days", str(opts.window_days)]
        if opts.audit:
            args += ["--audit-dir", str(Path(tmp) / "audit")]
        with serve_process(args, log_level="error", start_timeout=START_TIMEOUT) as served:
            base = f"http://127.0.0.1:{served.port}"
            for concurrency in levels:
                total = WARMUP + opts.requests
                # Signed now, so every token is fresh; a token lives 5 minutes, longer than a level's cap.
                now = datetime.now(UTC)
                tokens = [keys.token(base + SERVICE, now=now) if keys else None for _ in range(total)]
                run_level(served.port, concurrency, payloads, tokens[:WARMUP], opts.max_seconds)
                report(run_level(served.port, concurrency, payloads, tokens[WARMUP:], opts.max_seconds), baseline)

if __name__ == "__main__":
    main()
