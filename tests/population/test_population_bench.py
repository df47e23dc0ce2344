"""The population benchmark stays runnable: tiny runs of its I/O and stage modes (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from .helpers import facts_ndjson

BENCH = Path(__file__).parents[1] / "perf" / "bench_population.py"


def _bench(*args: str) -> str:
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_io_comparison_reports_both_overheads_and_the_kernel_share() -> None:
    out = _bench("--n", "40", "--repeat", "2", "--io-only")
    rounds = [line for line in out.splitlines() if line.startswith("round ")]
    assert len(rounds) == 2 and all("of which kernel" in line for line in rounds), out
    assert re.search(r"I/O overhead, \(run in process - in-memory\) / in-memory: -?\d+% by wall clock", out)
    assert re.search(r"I/O overhead by CPU time \(steadier under load\): -?\d+% in process\n", out)
    assert re.search(r"of which kernel time .*: -?\d+%", out)


def test_the_timed_stages_add_up_to_the_run() -> None:
    out = _bench("--n", "30", "--repeat", "1", "--stages")
    for stage in ("parse", "encode", "hash", "partition", "run"):
        assert re.search(rf"^    {stage} +[-+][\d.]+ +[-+][\d.]+%", out, re.MULTILINE), out
    assert "I/O overhead by CPU time" in out


def test_every_workload_the_instruction_counter_measures_runs(tmp_path: Path) -> None:
    # Under callgrind each is a subprocess; here each runs once, in this process, on a few patients.
    spec = importlib.util.spec_from_file_location("bench_population", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    source = tmp_path / "patients.ndjson"
    facts_ndjson(source, 25, bad=False)
    for what in ("setup", *bench.STAGES):
        work = tmp_path / what
        work.mkdir()
        bench.instruction_workload(source, work, what, False, None)
