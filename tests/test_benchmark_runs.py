"""The engine benchmark stays runnable: a tiny run prints every variant (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent / "perf" / "bench_engine.py"


def test_engine_benchmark_runs_and_reports_every_variant():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--n", "20", "--repeat", "2"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for variant in ("validate", "durable+verify", "durable", "reference", "durable, no trace", "+findings", "+to_json"):
        line = next((x for x in out.stdout.splitlines() if x.startswith(variant + " ")), None)
        assert line is not None, out.stdout
        assert re.search(r"\d+/s \(rounds \d+-\d+\)\s+p50 +[\d.]+ us +p99 +[\d.]+ us +p50 vs validate +[\d.]+x", line)


def test_every_stage_the_instruction_counter_measures_runs() -> None:
    # Under valgrind each stage is a subprocess; here each runs once, in process, on 3 documents.
    sys.path.insert(0, str(BENCH.parent))
    import count_instructions

    stages = ("baseline", "evaluate", *count_instructions.STAGES, *count_instructions.CONSUMER_STAGES)
    for backend in ("durable", "reference"):
        for stage in stages:
            count_instructions.workload(3, stage, backend)
