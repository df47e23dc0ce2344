"""Which inputs a run reads, and how they are cut into partitions.

A partition is a small, picklable description (a file and a line range, or a
list of files) that a worker turns back into records with :func:`read_partition`.
Partitions depend only on the inputs and the partition size, never on the number
of workers, so every way of running a population gives the same partitions, the
same order and the same hashes.

Accepted inputs: facts NDJSON (``.ndjson``/``.jsonl``), folders or globs of facts
files (``.json``), folders of per-patient FHIR Bundles, and FHIR Bulk Data
``$export`` output (a folder of NDJSON per resource type, or its ``manifest.json``),
each optionally gzip-compressed (``.gz``).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from neurocds.population.partition import InputRecord
from neurocds.population.settings import RunSettings

NDJSON_SUFFIXES = (".ndjson", ".jsonl")
INPUT_FORMATS = ("auto", "facts", "fhir", "bulk")


class InputError(ValueError):
    """An input cannot be used at all (missing, unreadable, of no known kind)."""


@dataclass(frozen=True)
class Partition:
    """One unit of work: ``count`` records of ``path`` from ``offset``, or the listed ``files``."""

    index: int
    kind: str  # facts-ndjson | facts-files | fhir-bundles | bulk
    count: int
    path: str = ""
    offset: int = 0  # in the decompressed stream
    first_line: int = 1
    files: tuple[str, ...] = ()
    shared: str = ""  # bulk: the resources no patient owns (Medication, Organization ...)

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}"


@dataclass
class Plan:
    """Every partition of a run, the inputs read (with hashes) and what was set aside."""

    partitions: list[Partition] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    blank_lines: int = 0
    bulk: dict[str, Any] = field(default_factory=dict)  # Bulk Data join accounting
    join_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(p.count for p in self.partitions)


def open_maybe_gzip(path: str | Path) -> IO[bytes]:
    """A binary reader over ``path``, decompressing ``.gz`` files."""
    if str(path).endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _stem(path: str | Path) -> str:
    name = Path(path).name
    return name[:-3] if name.endswith(".gz") else name


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_partitions(
    inputs: Sequence[str | Path], settings: RunSettings, work_dir: Path, *, input_format: str = "auto"
) -> Plan:
    """Find every record of ``inputs`` and cut them into partitions.

    :param work_dir: where a Bulk Data join writes its per-partition files.
    :raises InputError: an input is missing or of no known kind.
    """
    if input_format not in INPUT_FORMATS:
        raise InputError(f"input format must be one of {', '.join(INPUT_FORMATS)}")
    plan = Plan()
    ndjson: list[Path] = []
    facts_files: list[Path] = []
    bundles: list[Path] = []
    bulk: list[Path] = []
    for item in inputs:
        for path in _expand(str(item)):
            kind = _classify(path, input_format)
            {"facts-ndjson": ndjson, "facts-files": facts_files, "fhir-bundles": bundles, "bulk": bulk}[kind].append(
                path
            )
    for path in ndjson:
        _plan_ndjson(plan, path, settings.partition_size_for("facts-ndjson"))
    _plan_files(plan, "facts-files", facts_files, settings.partition_size_for("facts-files"))
    _plan_files(plan, "fhir-bundles", bundles, settings.partition_size_for("fhir-bundles"))
    if bulk:
        from neurocds.population.bulk import plan_bulk

        plan_bulk(plan, bulk, work_dir, settings.partition_size_for("bulk"))
    if not plan.inputs:
        raise InputError("no input files found")
    return plan


def _expand(item: str) -> list[Path]:
    if any(ch in item for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        if not found:
            raise InputError(f"{item}: no file matches")
        return found
    path = Path(item)
    if path.is_dir():
        manifest = path / "manifest.json"
        if manifest.is_file():
            return [manifest]
        found = sorted(p for p in path.iterdir() if p.is_file() and _stem(p).endswith((".json", *NDJSON_SUFFIXES)))
        if not found:
            raise InputError(f"{item}: the folder holds no .json or .ndjson file")
        return found
    if not path.is_file():
        raise InputError(f"{item}: no such file or folder")
    return [path]


def _classify(path: Path, input_format: str) -> str:
    stem = _stem(path)
    if stem == "manifest.json" or input_format == "bulk":
        return "bulk"
    if stem.endswith(NDJSON_SUFFIXES):
        # Facts documents never carry "resourceType"; every Bulk Data line does.
        return "bulk" if input_format == "auto" and _looks_like_fhir(path) else "facts-ndjson"
    if input_format == "fhir":
        return "fhir-bundles"
    if input_format == "facts":
        return "facts-files"
    return "fhir-bundles" if _looks_like_fhir(path) else "facts-files"


def _looks_like_fhir(path: Path) -> bool:
    """Whether a .json file holds a FHIR resource: facts documents never have ``resourceType``."""
    try:
        with open_maybe_gzip(path) as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return b'"resourceType"' in head


def _input_entry(path: Path, kind: str, records: int) -> dict[str, Any]:
    return {
        "path": str(path),
        "kind": kind,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "records": records,
    }


def _plan_ndjson(plan: Plan, path: Path, size: int) -> None:
    """Cut one NDJSON file into runs of ``size`` non-blank lines, remembering where each starts."""
    records = 0
    offset = 0
    start = (0, 1)
    in_part = 0
    try:
        with open_maybe_gzip(path) as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    plan.blank_lines += 1
                else:
                    if in_part == 0:
                        start = (offset, number)
                    in_part += 1
                    records += 1
                    if in_part == size:
                        _add(plan, Partition(0, "facts-ndjson", in_part, str(path), start[0], start[1]))
                        in_part = 0
                offset += len(line)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    if in_part:
        _add(plan, Partition(0, "facts-ndjson", in_part, str(path), start[0], start[1]))
    plan.inputs.append(_input_entry(path, "facts-ndjson", records))


def _plan_files(plan: Plan, kind: str, files: list[Path], size: int) -> None:
    for start in range(0, len(files), size):
        chunk = files[start : start + size]
        _add(plan, Partition(0, kind, len(chunk), files=tuple(str(p) for p in chunk)))
    for path in files:
        plan.inputs.append(_input_entry(path, kind, 1))


def _add(plan: Plan, part: Partition) -> None:
    plan.partitions.append(Partition(**{**part.__dict__, "index": len(plan.partitions)}))


def read_partition(part: Partition) -> Iterator[InputRecord]:
    """The records of one partition, in order (a worker calls this; it reads only its share)."""
    if part.kind == "facts-ndjson":
        yield from _read_ndjson(part)
    elif part.kind == "bulk":
        from neurocds.population.bulk import read_bulk_partition

        yield from read_bulk_partition(part)
    else:
        record_kind = "bundle" if part.kind == "fhir-bundles" else "facts"
        for name in part.files:
            try:
                with open_maybe_gzip(name) as fh:
                    payload = fh.read()
            except (OSError, EOFError) as exc:
                yield InputRecord(name, "unreadable", f"cannot read: {exc}")
                continue
            yield InputRecord(name, record_kind, payload)


def _read_ndjson(part: Partition) -> Iterator[InputRecord]:
    left = part.count
    with open_maybe_gzip(part.path) as fh:
        fh.seek(part.offset)  # gzip seeks forward by decompressing: still one pass per partition
        for number, line in enumerate(fh, start=part.first_line):
            if not line.strip():
                continue
            yield InputRecord(f"{part.path}:{number}", "facts", line)
            left -= 1
            if not left:
                return
    if left:
        raise InputError(f"{part.path} changed while the run read it: {left} line(s) missing from {part.name}")


def remove_quietly(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
