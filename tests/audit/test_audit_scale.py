"""The log at scale: opening reads the tail only, the head's index is checked against the log,
verification streams, the fast encoder writes the canonical bytes, and the benchmark runs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result, read_lines
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocds.audit import AuditLog, verify_log
from neurocds.audit import chain as chain_module
from neurocds.audit import tail as tail_module
from neurocds.audit._canon import canonical_json
from neurocds.audit.chain import HEAD_NAME, LOG_NAME
from neurocds.audit.store import ChainStore
from neurocds.facts.canonical import encode_canonical

BENCH = Path(__file__).parents[1] / "perf" / "bench_audit.py"


def _fill(directory: Path, count: int, **options: Any) -> AuditLog:
    log = AuditLog(directory, **options)
    for _ in range(count):
        log.record_decision(make_result(), make_facts())
    return log


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of the log read by opening (the tail window) and syncing (what follows it)."""
    sizes: list[int] = []
    real_read, real_from = tail_module._read, ChainStore._read_from

    def read(fd: int, start: int, end: int) -> bytes:
        sizes.append(end - start)
        return real_read(fd, start, end)

    def read_from(self: ChainStore, offset: int) -> bytes:
        data = real_from(self, offset)
        sizes.append(len(data))
        return data

    monkeypatch.setattr(tail_module, "_read", read)
    monkeypatch.setattr(ChainStore, "_read_from", read_from)
    return sizes


def test_opening_reads_the_tail_not_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "log"
    _fill(d, 600)
    size = (d / LOG_NAME).stat().st_size
    assert size > 4 * tail_module.TAIL_WINDOW
    sizes = _count_reads(monkeypatch)
    appended = AuditLog(d).record_decision(make_result(), make_facts())
    assert appended.sequence == 601
    # the window, read to find its first record and again to scan it: never the whole log
    assert 0 < sum(sizes) <= 2 * tail_module.TAIL_WINDOW + 8192 < size / 2, sizes
    assert verify_log(d).ok


def test_a_damaged_record_inside_the_tail_window_is_still_refused(tmp_path: Path) -> None:
    from neurocds.audit import AuditIntegrityError

    d = tmp_path / "log"
    _fill(d, 60)
    lines = (d / LOG_NAME).read_bytes().splitlines(keepends=True)
    lines[-2] = lines[-2].replace(b'"emergency"', b'"routine"  ', 1)[: len(lines[-2]) - 1] + b"\n"
    (d / LOG_NAME).write_bytes(b"".join(lines))
    with pytest.raises(AuditIntegrityError) as info:
        AuditLog(d).record_decision(make_result(), make_facts())
    assert info.value.sequence == 59  # named exactly, by the full scan it falls back to


@pytest.mark.parametrize(
    "lie",
    [
        {"offset": 10},  # points into the first record
        {"last_length": 7},
        {"checkpoint": {"sequence": 3, "offset": 0, "length": 50}},
        {"quarantined": "not a list"},
    ],
)
def test_a_head_index_the_log_does_not_bear_out_means_a_full_scan(tmp_path: Path, keypair: Any, lie: Any) -> None:
    d = tmp_path / "log"
    _fill(d, 45, checkpoint_every=20, signing_key_path=keypair[0])
    head = json.loads((d / HEAD_NAME).read_bytes())
    head.update(lie)
    (d / HEAD_NAME).write_bytes(canonical_json(head))
    log = AuditLog(d, checkpoint_every=20, signing_key_path=keypair[0])
    for _ in range(20):
        log.record_decision(make_result(), make_facts())
    types = [r["type"] for r in read_lines(d)]
    # Checkpoints stay every 20 records: the last one was found where the log has it.
    assert [i + 1 for i, t in enumerate(types) if t == "checkpoint"] == [21, 42, 63]
    assert verify_log(d, public_key=keypair[1]).ok


def test_a_head_without_an_index_is_read_once_and_then_indexed(tmp_path: Path) -> None:
    d = tmp_path / "log"
    _fill(d, 50)
    head = json.loads((d / HEAD_NAME).read_bytes())
    legacy = {k: head[k] for k in ("sequence", "hash", "updated_at")}  # as written before the index
    (d / HEAD_NAME).write_bytes(canonical_json(legacy))
    AuditLog(d).record_decision(make_result(), make_facts())
    head = json.loads((d / HEAD_NAME).read_bytes())
    assert head["offset"] == (d / LOG_NAME).stat().st_size and head["sequence"] == 51


def test_verify_streams_the_log_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "log"
    _fill(d, 12)
    real = chain_module.scan_file
    monkeypatch.setattr(chain_module, "scan_file", lambda path, **kw: real(path, chunk=1000, **kw))
    from neurocds.audit import segment_scan

    monkeypatch.setattr(segment_scan, "scan_file", chain_module.scan_file)
    report = verify_log(d)
    assert report.ok and report.records == 12
    # a torn line at the end is still found across chunk borders
    with open(d / LOG_NAME, "ab") as fh:
        fh.write(b'{"sequence":13')
    report = verify_log(d)
    assert report.first_bad_sequence == 13 and report.records == 12


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(_json)
def test_the_fast_encoder_writes_the_canonical_bytes(value: Any) -> None:
    assert canonical_json(value) == definition(value)


def definition(value: Any) -> bytes:
    """The canonical form as defined (facts.strictjson): what every log's hashes depend on."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def test_records_full_of_hex_hashes_stay_on_the_fast_path() -> None:
    # The audit log and the facts hash share one encoder; its check for the float forms
    # orjson writes differently must not send every hash ("...3e7...", "1e5") to json.
    record = {"hash": "d59e72e5863807c0" * 4, "prev_hash": "0e12" * 16, "x": [1e16, 0.5, -3, "e-5"]}
    out, by_orjson = encode_canonical(record)
    assert by_orjson and out == definition(record)
    for differs in (1e-5, [6.7e-6], {"a": -1.5e-5}, 0.00002):
        out, by_orjson = encode_canonical(differs)
        assert not by_orjson and out == definition(differs)


def test_what_json_cannot_write_is_refused_not_written_by_orjson() -> None:
    from dataclasses import dataclass
    from datetime import UTC, datetime

    from neurocds.audit import AuditError

    @dataclass
    class Odd:
        a: int

    for value in (Odd(1), datetime.now(UTC), {1: "a", "b": 2}):
        with pytest.raises(AuditError, match="canonical JSON"):
            canonical_json({"v": value})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_fast_encoder_refuses_what_json_refuses(bad: float) -> None:
    from neurocds.audit import AuditError

    with pytest.raises(AuditError, match="canonical JSON"):
        canonical_json({"a": [None, bad]})


def test_the_benchmark_runs_and_reports_every_figure(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--n", "120", "--appends", "16", "--threads", "4", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for pattern in (
        r"built 120 records",
        r"decision record size: median [\d.]+ KB",
        r"verify: 1[23]\d records in [\d.]+ s = [\d,]+ records/s \([\d,]+ per CPU second: one core\), ok=True",
        r"load average at the start: [\d.]+ [\d.]+ [\d.]+",
        r"open \+ first append at 120 records: median [\d.]+ ms",
        r"append: [\d.]+ ms CPU \(user\) per fsynced decision",
        r"group commit: [\d,]+ fsynced decisions/s from 4 threads",
    ):
        assert re.search(pattern, out.stdout), (pattern, out.stdout)
