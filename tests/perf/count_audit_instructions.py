"""Instructions per audit append and per verified record, counted by callgrind: repeatable where
CPU timings on a loaded machine are not.

    python tests/perf/count_audit_instructions.py [--appends 200] [--records 2000]

The decision bodies of the example documents are built once, outside callgrind (an
engine under valgrind takes minutes to start). Then each figure is the difference of
two callgrind runs that do the same set-up and differ only in the work counted:

* append: N decisions appended (compacted, encoded, hashed, checked, written; the fsync
  is the kernel's and not counted) against none, after 20 warm-up appends in both;
* verify: ``verify_log`` over a log of N decisions against a log of one.

Needs ``valgrind`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _bodies(path: Path) -> list[dict[str, object]]:
    return [dict(b) for b in json.loads(path.read_text(encoding="utf-8"))]


def append_workload(bodies_file: Path, directory: Path, n: int) -> None:
    from neurocds.audit import AuditLog, PendingRecord

    log = AuditLog(directory)
    pending = [PendingRecord("decision", b) for b in _bodies(bodies_file)]
    for i in range(20):  # warm up: imports, the catalog learns the examples' static parts
        log.append_together([pending[i % len(pending)]])
    for i in range(n):
        log.append_together([pending[i % len(pending)]])


def verify_workload(directory: Path) -> None:
    from neurocds.audit import verify_log

    report = verify_log(directory)
    if not report.ok:
        raise SystemExit(f"the log does not verify: {report.problems[:1]}")


def _count(*args: str) -> int:
    from count_instructions import callgrind_count

    return callgrind_count([sys.executable, __file__, *args])


def _build_log(directory: Path, bodies_file: Path, n: int) -> None:
    from neurocds.audit import AuditLog, PendingRecord

    log = AuditLog(directory)
    pending = [PendingRecord("decision", b) for b in _bodies(bodies_file)]
    for start in range(0, n, 100):
        for i in range(start, min(n, start + 100)):
            log.append_together([pending[i % len(pending)]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=200)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--workload", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.workload:
        kind, *rest = args.workload
        if kind == "append":
            append_workload(Path(rest[0]), Path(rest[1]), int(rest[2]))
        else:
            verify_workload(Path(rest[0]))
        return
    sys.path.insert(0, str(HERE))
    from bench_audit import example_decisions

    from neurocds.audit import AuditLog

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        bodies_file = base / "bodies.json"
        bodies_file.write_text(json.dumps(example_decisions(AuditLog(base / "scratch"))), encoding="utf-8")
        counted = _count("--workload", "append", str(bodies_file), str(base / "a1"), str(args.appends))
        baseline = _count("--workload", "append", str(bodies_file), str(base / "a0"), "0")
        per_append = (counted - baseline) / args.appends
        print(f"append: {per_append:,.0f} instructions per decision ({args.appends} appends)")
        _build_log(base / "big", bodies_file, args.records)
        _build_log(base / "one", bodies_file, 1)
        counted = _count("--workload", "verify", str(base / "big"))
        baseline = _count("--workload", "verify", str(base / "one"))
        per_record = (counted - baseline) / (args.records - 1)
        print(f"verify: {per_record:,.0f} instructions per record ({args.records} records)")


if __name__ == "__main__":
    main()
