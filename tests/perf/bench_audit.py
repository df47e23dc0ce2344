"""Audit log benchmark at a hospital's scale: record size, open, append, group commit, verify.

    python tests/perf/bench_audit.py [--n 100000] [--appends 400] [--threads 8] [--dir DIR]

Builds a log of ``--n`` decision records quickly (the decisions of the example
documents in examples/, each recorded under its own id, compacted, sealed and chained
exactly as the writer does, written in bulk without an fsync per record, with a
signed checkpoint every 10,000), then measures on it:

* record size: median and 95th percentile bytes of a decision record's line;
* open: wall time of opening the log and making the first append (median of 5,
  each in a fresh process so nothing is cached in memory but the OS page cache);
* append CPU: user CPU seconds per fsynced decision appended by one thread (what
  building, compacting, encoding, hashing and checking a record costs), and apart
  from it the kernel's time (the write and the fsync);
* group commit: fsynced decisions/s from ``--threads`` threads appending at once;
* query: building the SQLite index once, then selective queries through it (median of 3);
* verify: records/s of ``verify_log`` over the whole log, and its peak memory
  (max RSS of a fresh process, minus that of the same process before verifying).

Figures are medians of the runs shown; nothing here is asserted. CI runs it with a
small ``--n`` (tests/audit/test_audit_scale.py); the README quotes a large run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_EVERY = 10_000


def example_decisions(log: Any) -> list[dict[str, Any]]:
    """Decision bodies of every example document, as the writer would record them."""
    from neurocds import Engine
    from neurocds_packs import BUILTIN_PACKS

    engine = Engine(packs=BUILTIN_PACKS)
    bodies = []
    for path in sorted((ROOT / "examples").glob("*.json")):
        facts = json.loads(path.read_text(encoding="utf-8"))
        bodies.append(dict(log.prepare_decision(engine.evaluate(facts), facts).body))
    return bodies


def build(directory: Path, n: int, key_path: Path) -> None:
    """Write ``n`` decision records (and a checkpoint every 10,000) as one writer would."""
    from neurocds.audit import AuditLog, mirror
    from neurocds.audit.chain import ScanResult
    from neurocds.audit.compact import compact
    from neurocds.audit.records import GENESIS_HASH, seal_line
    from neurocds.audit.signing import load_private_key, sign_checkpoint
    from neurocds.audit.store import ChainStore
    from neurocds.audit.store_state import StoreState

    log = AuditLog(directory)
    bodies = example_decisions(log)
    key = load_private_key(key_path, audit_dir=directory)
    store = ChainStore(directory)
    state = StoreState(inode=os.stat(directory / "audit.jsonl").st_ino, scan=ScanResult(0, GENESIS_HASH, 0))
    sequence, prev, offset = 0, GENESIS_HASH, 0
    buffer: list[bytes] = []
    with open(directory / "audit.jsonl", "ab") as fh:
        for i in range(n):
            body = dict(bodies[i % len(bodies)])
            body["decision_id"] = f"00000000-0000-4000-8000-{i:012d}"
            body["patient_pseudonym"] = hashlib.sha256(b"patient %d" % (i % max(1, n // 3))).hexdigest()
            if sequence % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                cp = sign_checkpoint(key, sequence=sequence, head_hash=prev, signed_at="2026-01-01T00:00:00Z")
                record, line = seal_line("checkpoint", cp, sequence=sequence + 1, prev_hash=prev)
                mirror.mirror_checkpoint(directory, record["sequence"], cp)  # as the writer copies it
                state.mirrored_through = record["sequence"]
            else:
                body = compact(body, store.catalog.intern, store.catalog.position, store.catalog.memo)
                record, line = seal_line("decision", body, sequence=sequence + 1, prev_hash=prev)
            state.note(record, offset, offset + len(line))
            sequence, prev, offset = record["sequence"], record["hash"], offset + len(line)
            buffer.append(line)
            if len(buffer) >= 1000:
                store.catalog.flush()  # before the records that name its entries
                fh.write(b"".join(buffer))
                buffer.clear()
        store.catalog.flush()
        fh.write(b"".join(buffer))
        fh.flush()
        os.fsync(fh.fileno())
    state.scan = ScanResult(sequence, prev, offset, line)
    store.write_head(sequence, prev, state.head_index())


def record_sizes(directory: Path) -> tuple[float, float]:
    sizes = []
    with open(directory / "audit.jsonl", "rb") as fh:
        for line in fh:
            if b'"type":"decision"' in line[-400:]:
                sizes.append(len(line))
    sizes.sort()
    return statistics.median(sizes), sizes[int(len(sizes) * 0.95) - 1]


def _child(code: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


OPEN_CODE = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
from bench_audit import example_decisions
from neurocds.audit import AuditLog, PendingRecord
probe = AuditLog(sys.argv[3])  # a scratch log, only to build a decision body
body = example_decisions(probe)[0]
t = time.perf_counter()
log = AuditLog(sys.argv[1])
log.append_together([PendingRecord("decision", body)])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

VERIFY_CODE = """
import json, resource, sys, time
from neurocds.audit import verify_log


def peak_kb():
    # ru_maxrss survives fork and exec on Linux (a child of a big parent reports the
    # parent's peak); the kernel's VmHWM belongs to this process image alone.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


usage = resource.getrusage(resource.RUSAGE_SELF)
before = peak_kb()
t, cpu = time.perf_counter(), usage.ru_utime + usage.ru_stime
report = verify_log(sys.argv[1], public_key=sys.argv[2])
seconds = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
after, cpu = peak_kb(), usage.ru_utime + usage.ru_stime - cpu
print(json.dumps({"seconds": seconds, "cpu": cpu, "records": report.records, "ok": report.ok,
                  "peak_mb": after / 1024, "extra_mb": (after - before) / 1024,
                  "problems": [p.reason for p in report.problems][:3]}))
"""


def measure_open(directory: Path, scratch: Path) -> float:
    runs = [
        _child(OPEN_CODE, str(directory), str(Path(__file__).parent), str(scratch / f"probe{i}"))["seconds"]
        for i in range(5)
    ]
    return statistics.median(runs)


def measure_appends(directory: Path, appends: int, threads: int) -> tuple[float, float, float]:
    """(user CPU seconds per append from one thread, system CPU seconds per append (the
    kernel's share, fsync included), fsynced appends/s from ``threads`` threads)."""
    from neurocds.audit import AuditLog, PendingRecord

    log = AuditLog(directory)
    bodies = example_decisions(log)
    pending = [PendingRecord("decision", b) for b in bodies]
    for i in range(20):  # warm up: the catalog learns the examples' static parts
        log.append_together([pending[i % len(pending)]])
    before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(appends):
        log.append_together([pending[i % len(pending)]])
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / appends
    system = (after.ru_stime - before.ru_stime) / appends

    per_thread = max(1, appends // threads)
    barrier = threading.Barrier(threads + 1)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            log.append_together([pending[(i + k) % len(pending)]])

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t = time.perf_counter()
    for w in workers:
        w.join()
    rate = per_thread * threads / (time.perf_counter() - t)
    return user, system, rate


def measure_queries(directory: Path, n: int) -> list[tuple[str, int, float]]:
    """(query, records found, median seconds) for selective queries through the index."""
    from neurocds.audit import index
    from neurocds.audit.query import RecordFilter, parse_time

    middle = n // 2
    with open(directory / "audit.jsonl", "rb") as fh:
        for k, line in enumerate(fh):
            if k == middle:
                record = json.loads(line)
                break
    when = parse_time(record["recorded_at"])
    from datetime import timedelta

    pseudonym = record["decision"]["patient_pseudonym"]
    cases = {
        "--pseudonym P": (RecordFilter(pseudonym=pseudonym), None),
        "--since T --until T+10ms": (RecordFilter(since=when, until=when + timedelta(milliseconds=10)), None),
        "--finding F --limit 100": (RecordFilter(finding="spinal.cord_compression_suspected"), 100),
        "--urgency urgent --incomplete --limit 100": (RecordFilter(urgency=("urgent",), incomplete=True), 100),
    }
    out = []
    for label, (flt, limit) in cases.items():
        runs, found = [], 0
        for _ in range(3):
            t = time.perf_counter()
            found = len(list(index.query(directory, flt, limit=limit)))
            runs.append(time.perf_counter() - t)
        out.append((label, found, statistics.median(runs)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="decision records in the built log")
    parser.add_argument("--appends", type=int, default=400, help="appends for the append measurements")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=None, help="where to build (default: a temporary folder)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from neurocds.audit import generate_keypair

    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        base = Path(tmp)
        generate_keypair(base / "audit.key", base / "audit.pub")
        log_dir = base / "log"
        t = time.perf_counter()
        build(log_dir, args.n, base / "audit.key")
        built = time.perf_counter() - t
        size = (log_dir / "audit.jsonl").stat().st_size
        print(f"built {args.n:,} records in {built:.1f} s: {size / 1e6:,.1f} MB")
        median, p95 = record_sizes(log_dir)
        print(f"decision record size: median {median / 1024:.2f} KB, p95 {p95 / 1024:.2f} KB")
        verify = _child(VERIFY_CODE, str(log_dir), str(base / "audit.pub"))
        rate = verify["records"] / verify["seconds"]
        print(
            f"verify: {verify['records']:,} records in {verify['seconds']:.1f} s = {rate:,.0f} records/s "
            f"({verify['records'] / verify['cpu']:,.0f} per CPU second: one core), "
            f"ok={verify['ok']}, peak RSS {verify['peak_mb']:.0f} MB (+{verify['extra_mb']:.0f} MB while verifying)"
        )
        if not verify["ok"]:
            print("  problems:", verify["problems"])
        from neurocds.audit import index

        t = time.perf_counter()
        index.catch_up(log_dir)
        print(f"query index built in {time.perf_counter() - t:.1f} s ({args.n:,} records)")
        for label, found, seconds in measure_queries(log_dir, args.n):
            print(f"query {label}: {found} records in {seconds * 1000:.1f} ms (median of 3)")
        opened = measure_open(log_dir, base)
        print(f"open + first append at {args.n:,} records: median {opened * 1000:.1f} ms (5 fresh processes)")
        user, system, rate = measure_appends(base / "appends", args.appends, args.threads)
        print(
            f"append: {user * 1000:.3f} ms CPU (user) per fsynced decision, one thread; "
            f"kernel {system * 1000:.3f} ms (write, fsync)"
        )
        print(f"group commit: {rate:,.0f} fsynced decisions/s from {args.threads} threads")
        print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
