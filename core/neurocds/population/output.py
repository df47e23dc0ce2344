"""A run's files: per-partition parts (written atomically), then the merged outputs.

Each partition writes ``parts/part-NNNNN.{results.ndjson,errors.ndjson,parquet}``
under temporary names and renames them into place, then its ``.done.json``
marker last. A partition retried after its worker died therefore replaces, never
adds to, what an earlier attempt wrote; ``--resume`` trusts only partitions whose
marker exists. The merge concatenates the parts in partition order, counting the
lines it writes, so "lines in = results + errors" is checked on the files
themselves.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from neurocds.population.partition import ROW_COLUMNS, EvaluatedPartition, worker_identity
from neurocds.population.settings import RunSettings
from neurocds.population.sources import Partition, dumps_line, remove_quietly

RESULTS = "results.ndjson"
ERRORS = "errors.ndjson"
FINDINGS = "findings.parquet"
SUMMARY = "summary.json"
PARTS = "parts"
ROW_SCHEMA = pa.schema(
    [
        ("patient_id", pa.string()),
        ("finding", pa.string()),
        ("urgency", pa.string()),
        ("pack", pa.string()),
        ("rule", pa.string()),
        ("complete", pa.bool_()),
    ]
)
assert tuple(ROW_SCHEMA.names) == ROW_COLUMNS


def part_path(out_dir: Path, part: Partition, suffix: str) -> Path:
    return out_dir / PARTS / f"{part.name}.{suffix}"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _write_lines(path: Path, items: Sequence[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.writelines(dumps_line(item) for item in items)

    _atomic_write(path, write)


def write_partition(
    out_dir: Path, part: Partition, evaluated: EvaluatedPartition, settings: RunSettings
) -> dict[str, Any]:
    """Write one partition's parts, then its done marker; return the marker."""
    (out_dir / PARTS).mkdir(parents=True, exist_ok=True)
    _atomic_write(part_path(out_dir, part, "results.ndjson"), lambda tmp: tmp.write_bytes(b"".join(evaluated.lines)))
    _write_lines(part_path(out_dir, part, "errors.ndjson"), evaluated.errors)
    table = pa.Table.from_pydict(evaluated.rows, schema=ROW_SCHEMA)
    _atomic_write(part_path(out_dir, part, "parquet"), lambda tmp: pq.write_table(table, tmp))
    marker = {
        "partition": part.name,
        "planned": part.count,
        **evaluated.to_tallies(),
        "result_hashes": evaluated.result_hashes,
        "error_hashes": [_error_hash(e) for e in evaluated.errors],
        "engine": evaluated.engine,
        "packs": evaluated.packs,
        "worker": worker_identity(settings),
    }
    _atomic_write(part_path(out_dir, part, "done.json"), lambda tmp: tmp.write_text(json.dumps(marker)))
    return marker


def _error_hash(entry: dict[str, Any]) -> str:
    from neurocds.facts.strictjson import sha256_canonical

    # Where a file lay is not part of what was wrong with it: moved inputs hash alike.
    return sha256_canonical({k: v for k, v in entry.items() if k != "source"})


def read_marker(out_dir: Path, part: Partition) -> dict[str, Any] | None:
    """The done marker of a finished partition whose parts are all present, else ``None``."""
    try:
        marker: dict[str, Any] = json.loads(part_path(out_dir, part, "done.json").read_text())
    except (OSError, ValueError):
        return None
    parts_present = all(part_path(out_dir, part, s).is_file() for s in ("results.ndjson", "errors.ndjson", "parquet"))
    if not parts_present or marker.get("planned") != part.count or marker.get("partition") != part.name:
        return None
    return marker


def clear_parts(out_dir: Path) -> None:
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)


def merge(out_dir: Path, partitions: Sequence[Partition], join_errors: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Concatenate the parts into the run's outputs; return the lines and rows actually written."""
    written = {"results": 0, "errors": len(join_errors), "rows": 0}

    def concatenate(what: str, first: Sequence[dict[str, Any]] = ()) -> Any:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as out:
                out.writelines(dumps_line(e) for e in first)
                for part in partitions:
                    data = part_path(out_dir, part, f"{what}.ndjson").read_bytes()  # a few MB at most
                    out.write(data)
                    written[what] += data.count(b"\n")  # counted as written, not as reported

        return write

    def write_findings(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, ROW_SCHEMA) as writer:
            for part in partitions:
                table = pq.read_table(part_path(out_dir, part, "parquet"), schema=ROW_SCHEMA)
                written["rows"] += table.num_rows
                writer.write_table(table)

    _atomic_write(out_dir / RESULTS, concatenate("results"))
    _atomic_write(out_dir / ERRORS, concatenate("errors", join_errors))
    _atomic_write(out_dir / FINDINGS, write_findings)
    return written


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    _atomic_write(out_dir / SUMMARY, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))


def remove_outputs(out_dir: Path) -> None:
    for name in (RESULTS, ERRORS, FINDINGS, SUMMARY):
        remove_quietly(out_dir / name)
