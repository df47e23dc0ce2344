"""Latency of a CDS Hooks call that must fetch three prefetch templates from the FHIR server.

    python tests/perf/bench_cdshooks_fetch.py [--requests 200] [--patients 8] [--deadline 0.4]

Starts a real FHIR server (SEKMET, ``sekmet-fhir`` 0.1.1, see
tests/cdshooks/fhir_server.py) on 127.0.0.1, loads shared Synthea patients into
it, and starts ``neurocds serve`` (all installed packs, one worker, loopback test
mode, ``--fhir-deadline``). Each call sends ``patient`` and ``medications`` and
leaves ``conditions``, ``observations`` and ``procedures`` for the service to
fetch (concurrently, following pages). In the same run, the same calls with all
five keys prefetched give the baseline: the difference is the fetch.

Prints p50/p95/max per mode (one client, sequential calls, after a warm-up) and
the number of 412s (fetches that missed the deadline). Timings are medians and
percentiles of this run only; compare modes, not machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from cdshooks.fhir_server import load_patients, sekmet_command, sekmet_server  # noqa: E402 (after the path set-up)
from cdshooks.support import SYNTHEA_DATA, hook_request, http_call, serve_process  # noqa: E402

SERVICE = "/cds-services/neurocds-patient-view"
FETCHED = ("conditions", "observations", "procedures")
WARMUP = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(port: int, bodies: list[dict[str, Any]], count: int) -> tuple[list[float], dict[int, int]]:
    statuses: dict[int, int] = {}
    for body in bodies[:WARMUP]:
        http_call(port, "POST", SERVICE, body)
    times = []
    for index in range(count):
        started = time.perf_counter()
        status = http_call(port, "POST", SERVICE, bodies[index % len(bodies)]).status
        times.append((time.perf_counter() - started) * 1e3)
        statuses[status] = statuses.get(status, 0) + 1
    return times, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=0.4, help="the service's --fhir-deadline")
    args = parser.parse_args()
    if sekmet_command() is None:
        sys.exit("sekmet-fhir is not installed: see tests/cdshooks/fhir_server.py")
    names = sorted(p.name for p in SYNTHEA_DATA.glob("*.json"))[: args.patients]
    with tempfile.TemporaryDirectory() as tmp, sekmet_server(Path(tmp)) as server:
        ids = load_patients(server, names)
        full = {pid: server.prefetch(pid) for pid in ids}
        auth = {"access_token": server.token, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read"}
        modes: dict[str, list[dict[str, Any]]] = {"prefetched (baseline)": [], "3 templates fetched": []}
        for pid in ids:
            partial = {k: v for k, v in full[pid].items() if k not in FETCHED}
            for mode, prefetch in zip(modes, (full[pid], partial), strict=True):
                body = hook_request("patient-view", pid, prefetch)
                body.update(fhirServer=server.base, fhirAuthorization=auth)
                modes[mode].append(body)
        serve_args = [
            "--insecure-dev",
            f"--fhir-server={server.base}",
            "--fhir-test-loopback",
            f"--fhir-deadline={args.deadline}",
            "--observation-window-days=36500",
        ]
        with serve_process(serve_args) as served:
            results = {mode: measure(served.port, bodies, args.requests) for mode, bodies in modes.items()}
    print(f"{args.requests} sequential calls per mode, {len(ids)} Synthea patients, deadline {args.deadline} s")
    for mode, (times, statuses) in results.items():
        print(
            f"  {mode:24s} p50 {statistics.median(times):6.1f} ms  p95 {percentile(times, 0.95):6.1f} ms  "
            f"max {max(times):6.1f} ms  statuses {json.dumps(statuses, sort_keys=True)}"
        )
    base = statistics.median(results["prefetched (baseline)"][0])
    fetch = statistics.median(results["3 templates fetched"][0])
    print(f"  fetching adds {fetch - base:.1f} ms at the median ({fetch / base:.2f}x the baseline)")


if __name__ == "__main__":
    main()
