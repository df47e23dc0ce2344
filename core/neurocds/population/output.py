"""A run's files: per-partition parts (written atomically), then the run's outputs.

Each partition writes ``parts/part-NNNNN.{results.ndjson,errors.ndjson,parquet}``
under temporary names and renames them into place, then its ``.done.json``
marker last, which records each part's size. A partition retried after its
worker died therefore replaces, never adds to, what an earlier attempt wrote;
``--resume`` trusts only partitions whose marker exists and whose parts have the
sizes it records.

The run's results are a folder, ``results/``: each partition's results part under
``part-NNNNN.ndjson`` (zero-padded, so name order is input order), hard-linked, not
copied, and ``_manifest.json`` listing the parts in order with their lines and
bytes. A result line is ~20 KB, so the results are nearly all a run writes: joined
into one file they were written twice (once as parts, once by the kernel's copy at
the join), which cost about as much as writing them at all. Readers that take a
folder of NDJSON parts (Spark, Dask, pandas over a glob) read it as it is; names
starting with ``_`` are skipped by Spark and Hadoop. :func:`iter_result_lines` reads
it in order. ``errors.ndjson`` (a line per rejected patient) is still one file, the
parts concatenated by the kernel. The lines of both are counted on the files
themselves, so "lines in = results + errors" is checked on what was written, not
on what workers reported. ``findings.parquet`` holds a few short rows per patient:
its parts are read and rewritten as one file.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from neurocds.population.partition import ROW_COLUMNS, EvaluatedPartition, dumps_line, worker_identity
from neurocds.population.settings import RunSettings
from neurocds.population.sources import Partition, remove_quietly

RESULTS = "results.ndjson"  # a partition's results part, in parts/
RESULTS_DIR = "results"  # the run's results: one NDJSON file per partition, and the manifest
MANIFEST = "_manifest.json"
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
    try:
        write(tmp)
    except BaseException:
        remove_quietly(tmp)  # a failed or interrupted write leaves nothing half-written behind
        raise
    os.replace(tmp, path)


@contextlib.contextmanager
def results_part(out_dir: Path, part: Partition) -> Iterator[Callable[[bytes], object]]:
    """Where a partition's result lines go as they are made: its results part, under a
    temporary name until the block ends without an exception (then renamed into place).

    Written line by line, a partition's results (tens of megabytes) are never held in
    memory, nor joined into one more copy.
    """
    path = part_path(out_dir, part, RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            yield fh.write
    except BaseException:
        remove_quietly(tmp)  # an interrupted partition leaves nothing half-written behind
        raise
    os.replace(tmp, path)


def write_partition(
    out_dir: Path, part: Partition, evaluated: EvaluatedPartition, settings: RunSettings
) -> dict[str, Any]:
    """Write one partition's other parts, then its done marker; return the marker.

    The results part is already in place (:func:`results_part`). The marker is what
    travels back to the run (from a pool process or a Dask worker): counts, hashes and
    part sizes, a few tens of bytes per patient, never the result documents themselves.

    :raises OSError: the results part is not the size of the lines the partition made.
    """
    found = part_path(out_dir, part, RESULTS).stat().st_size
    if found != evaluated.result_bytes:
        raise OSError(f"{part.name}: its results part holds {found} bytes, its lines {evaluated.result_bytes}")
    errors = [dumps_line(item) for item in evaluated.errors]
    _atomic_write(part_path(out_dir, part, ERRORS), lambda tmp: _write_lines(tmp, errors))
    table = pa.Table.from_pydict(evaluated.rows, schema=ROW_SCHEMA)
    _atomic_write(part_path(out_dir, part, "parquet"), lambda tmp: pq.write_table(table, tmp))
    marker = {
        "partition": part.name,
        "planned": part.count,
        **evaluated.to_tallies(),
        "bytes": {RESULTS: evaluated.result_bytes, ERRORS: sum(map(len, errors))},
        "result_hashes": evaluated.result_hashes,
        "error_hashes": [_error_hash(e) for e in evaluated.errors],
        "engine": evaluated.engine,
        "packs": evaluated.packs,
        "worker": worker_identity(settings),
    }
    _atomic_write(part_path(out_dir, part, "done.json"), lambda tmp: tmp.write_text(json.dumps(marker)))
    return marker


def _write_lines(path: Path, lines: Sequence[bytes]) -> None:
    with open(path, "wb") as fh:
        fh.writelines(lines)


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
    if marker.get("planned") != part.count or marker.get("partition") != part.name:
        return None
    sizes = marker.get("bytes")
    if not isinstance(sizes, dict) or not part_path(out_dir, part, "parquet").is_file():
        return None
    for what in (RESULTS, ERRORS):
        try:
            if part_path(out_dir, part, what).stat().st_size != sizes.get(what):
                return None  # missing or cut short: run the partition again
        except OSError:
            return None
    return marker


def clear_parts(out_dir: Path) -> None:
    shutil.rmtree(out_dir / PARTS, ignore_errors=True)


def merge(
    out_dir: Path,
    partitions: Sequence[Partition],
    markers: Sequence[dict[str, Any]],
    join_errors: Sequence[dict[str, Any]],
) -> dict[str, int]:
    """Assemble the run's outputs from the parts; return the lines and rows actually written.

    :param markers: the partitions' done markers, in partition order (their part sizes).
    :raises OSError: a part is missing or not the size its partition wrote.
    """
    written = {"results": 0, "errors": 0, "rows": 0}

    def concatenate(what: str, first: bytes = b"") -> Any:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as out:
                out.write(first)
                out.flush()
                for part, marker in zip(partitions, markers, strict=True):
                    _append(out.fileno(), part_path(out_dir, part, what), marker["bytes"][what])
            written[what.split(".")[0]] = count_lines(tmp)  # counted as written, not as reported

        return write

    def write_findings(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, ROW_SCHEMA) as writer:
            for part in partitions:
                # ParquetFile, not read_table: that one imports pyarrow.dataset (0.4-0.6 s of every run's end).
                table = pq.ParquetFile(part_path(out_dir, part, "parquet")).read().cast(ROW_SCHEMA)
                written["rows"] += table.num_rows
                writer.write_table(table)

    written["results"] = _link_results(out_dir, partitions, markers)
    _atomic_write(out_dir / ERRORS, concatenate(ERRORS, b"".join(dumps_line(e) for e in join_errors)))
    _atomic_write(out_dir / FINDINGS, write_findings)
    return written


def _link_results(out_dir: Path, partitions: Sequence[Partition], markers: Sequence[dict[str, Any]]) -> int:
    """Make ``results/`` from the results parts (linked, or copied where links are refused),
    with its manifest; return the lines it holds, counted on the files.

    Assembled under a temporary name and renamed into place: the folder is complete or absent.
    """
    staging = out_dir / f"{RESULTS_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        listed: list[dict[str, Any]] = []
        for part, marker in zip(partitions, markers, strict=True):
            source, name = part_path(out_dir, part, RESULTS), f"{part.name}.ndjson"
            found = source.stat().st_size
            if found != marker["bytes"][RESULTS]:
                raise OSError(f"{source.name} holds {found} bytes, its partition wrote {marker['bytes'][RESULTS]}")
            try:
                os.link(source, staging / name)
            except OSError:  # a file system without hard links: one copy, as the join used to make
                shutil.copyfile(source, staging / name)
            listed.append({"path": name, "lines": count_lines(staging / name), "bytes": found})
        lines: int = sum(p["lines"] for p in listed)
        manifest = {
            "format": "neurocds population results, NDJSON parts in input order",
            "parts": listed,
            "lines": lines,
            "bytes": sum(p["bytes"] for p in listed),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(out_dir / RESULTS_DIR, ignore_errors=True)  # an earlier attempt's
        os.replace(staging, out_dir / RESULTS_DIR)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return lines


def iter_result_lines(out_dir: str | os.PathLike[str]) -> Iterator[bytes]:
    """Every result line of the run in ``out_dir``, in input order, as the manifest lists the parts.

    :raises OSError: no results folder (the run did not finish), or a part is missing.
    """
    folder = Path(out_dir) / RESULTS_DIR
    manifest = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["parts"]:
        with open(folder / entry["path"], "rb") as fh:
            yield from fh


def _append(out_fd: int, path: Path, size: int) -> None:
    """Append the file at ``path`` (``size`` bytes, as its partition wrote it) to ``out_fd``, in the kernel."""
    with open(path, "rb") as src:
        found = os.fstat(src.fileno()).st_size
        if found != size:
            raise OSError(f"{path.name} holds {found} bytes, its partition wrote {size}")
        left = size
        kernel_copy = getattr(os, "copy_file_range", None)  # Linux; elsewhere through a buffer
        while left:
            try:
                if kernel_copy is None:
                    raise OSError("no copy_file_range")
                copied = kernel_copy(src.fileno(), out_fd, left)
            except OSError:  # not between these file systems (or this kernel): through a buffer
                chunk = memoryview(src.read(min(left, 1 << 24)))
                copied = len(chunk)
                while chunk:
                    chunk = chunk[os.write(out_fd, chunk) :]
            if copied == 0:
                raise OSError(f"{path.name} ended {left} bytes early")
            left -= copied


def count_lines(path: Path) -> int:
    """Newlines in ``path``, found in place through a memory map.

    ``find`` scans at memchr speed and copies nothing; counting slices of the map cost
    a fresh 16 MB copy per window and a byte-at-a-time count (together about as much as
    encoding the results), where finding each newline of a ~20 KB line costs a call.
    """
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return 0
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            lines, at = 0, view.find(b"\n")
            while at >= 0:
                lines += 1
                at = view.find(b"\n", at + 1)
            return lines


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    _atomic_write(out_dir / SUMMARY, lambda tmp: tmp.write_text(json.dumps(summary, indent=2) + "\n"))


def remove_outputs(out_dir: Path) -> None:
    shutil.rmtree(out_dir / RESULTS_DIR, ignore_errors=True)
    for name in (ERRORS, FINDINGS, SUMMARY):
        remove_quietly(out_dir / name)
