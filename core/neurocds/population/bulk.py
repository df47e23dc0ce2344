"""FHIR Bulk Data ``$export`` output: one join by patient reference, then one Bundle per patient.

An export is NDJSON per resource type (``Patient.000.ndjson``, ``Condition.000.ndjson``
...), with or without its ``manifest.json``. The driver streams every line once:
Patient lines fix each patient's partition (in export order, ``size`` patients
each); every other line goes to the partition of the patient its ``subject``,
``patient`` or ``beneficiary`` names, and a line that names nobody (Medication,
Organization, Practitioner) to a shared file. A worker then reads only its own
partition file and the shared one, and assembles each patient's collection
Bundle, adding the shared resources that patient's resources refer to.

Every line is accounted for: joined to a patient, shared, or rejected with its
``file:line`` (unparseable, no resource type, a patient the export does not hold).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from neurocds.fhir.bundle import reference_key
from neurocds.population.partition import InputRecord, dumps_line
from neurocds.population.sources import (
    InputError,
    Partition,
    Plan,
    _input_entry,
    open_maybe_gzip,
    remove_quietly,
)

PATIENT_REFERENCES = ("subject", "patient", "beneficiary")  # how a resource names its patient
_FLUSH_BYTES = 1 << 18  # buffered per partition file, so thousands of partitions need no open files


def resource_files(files: list[Path]) -> list[Path]:
    """The NDJSON files of an export: a manifest's ``output`` entries, or the files as given."""
    found: list[Path] = []
    for path in files:
        if path.name != "manifest.json":
            found.append(path)
            continue
        try:
            manifest = json.loads(path.read_bytes())
            outputs = manifest["output"]
            urls = [str(entry["url"]) for entry in outputs]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a Bulk Data manifest ({type(exc).__name__}: {exc})") from None
        for url in urls:
            local = path.parent / Path(urlparse(url).path).name  # the export's files sit beside it
            if not local.is_file():
                raise InputError(f"{path}: lists {url}, but {local} does not exist")
            found.append(local)
    # Patients first: their order fixes the partitions, and every other line needs them known.
    return sorted(dict.fromkeys(found), key=lambda p: (not p.name.startswith("Patient"), str(p)))


def plan_bulk(plan: Plan, files: list[Path], work_dir: Path, size: int) -> None:
    """Join the export by patient into per-partition files under ``work_dir``; add the partitions to ``plan``."""
    folder = work_dir / "bulk"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.ndjson"):
        remove_quietly(old)  # a previous attempt's join: rebuilt whole, so nothing is appended twice
    for manifest in (p for p in files if p.name == "manifest.json"):
        plan.inputs.append(_input_entry(manifest, "bulk-manifest", 0))
    join = _Join(folder, size)
    for path in resource_files(files):
        lines = join.read(path)
        plan.inputs.append(_input_entry(path, "bulk", lines))
    join.flush()
    shared = str(folder / "shared.ndjson")
    first = len(plan.partitions)
    for bucket, count in enumerate(join.bucket_sizes):
        bucket_file = str(folder / f"bucket-{bucket:05d}.ndjson")
        plan.partitions.append(Partition(first + bucket, "bulk", count, path=bucket_file, shared=shared))
    plan.bulk = {
        "resource_lines": join.lines,
        "patients": len(join.bucket_of),
        "joined": join.joined,
        "shared": join.shared,
        "rejected": len(join.errors),
        "by_type": dict(sorted(join.by_type.items())),
    }
    plan.join_errors.extend(join.errors)


class _Join:
    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size = folder, size
        self.bucket_of: dict[str, int] = {}
        self.bucket_sizes: list[int] = []
        self.buffers: dict[str, list[bytes]] = {}
        self.buffered: dict[str, int] = {}
        self.lines = self.joined = self.shared = 0
        self.by_type: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        (folder / "shared.ndjson").write_bytes(b"")

    def read(self, path: Path) -> int:
        count = 0
        try:
            with open_maybe_gzip(path) as fh:
                for number, raw in enumerate(fh, start=1):
                    if raw.strip():
                        count += 1
                        self._line(f"{path}:{number}", raw.strip())
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot read: {exc}") from None
        return count

    def _line(self, source: str, raw: bytes) -> None:
        self.lines += 1
        try:
            resource = json.loads(raw)
        except ValueError as exc:
            return self._reject(source, None, f"not JSON: {exc}")
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            return self._reject(source, None, "not a FHIR resource (no resourceType)")
        self.by_type[rtype] += 1
        if rtype == "Patient":
            pid = resource.get("id")
            if not isinstance(pid, str) or not pid:
                return self._reject(source, None, "Patient without an id cannot be joined", pointer="/id")
            if pid in self.bucket_of:
                return self._reject(source, pid, f"Patient/{pid} appears twice in the export", pointer="/id")
            bucket = len(self.bucket_of) // self.size
            self.bucket_of[pid] = bucket
            if bucket == len(self.bucket_sizes):
                self.bucket_sizes.append(0)
            self.bucket_sizes[bucket] += 1
            return self._write(f"bucket-{bucket:05d}.ndjson", pid, source, raw)
        named = _patient_named(resource)
        if named is None:
            self.shared += 1
            return self._write("shared.ndjson", None, source, raw)
        pointer, ref = named
        pid = _patient_id(ref, self.bucket_of)
        if pid is None:
            return self._reject(source, None, f"refers to {ref}, a patient the export does not hold", pointer=pointer)
        self.joined += 1
        return self._write(f"bucket-{self.bucket_of[pid]:05d}.ndjson", pid, source, raw)

    def _write(self, name: str, pid: str | None, source: str, raw: bytes) -> None:
        # The resource's own bytes are kept as they are: the worker parses them once.
        line = b'{"p":' + json.dumps(pid).encode() + b',"s":' + json.dumps(source).encode() + b',"r":' + raw + b"}\n"
        self.buffers.setdefault(name, []).append(line)
        self.buffered[name] = self.buffered.get(name, 0) + len(line)
        if self.buffered[name] >= _FLUSH_BYTES:
            self._flush(name)

    def _flush(self, name: str) -> None:
        with open(self.folder / name, "ab") as fh:
            fh.writelines(self.buffers.pop(name, []))
        self.buffered[name] = 0

    def flush(self) -> None:
        for name in list(self.buffers):
            self._flush(name)

    def _reject(self, source: str, pid: str | None, message: str, *, pointer: str = "") -> None:
        problem = {"pointer": pointer, "message": message, "code": "bulk"}
        self.errors.append({"source": source, "patient_id": pid, "stage": "bulk-join", "errors": [problem]})


def _patient_named(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    for key in PATIENT_REFERENCES:
        ref = resource.get(key)
        if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
            return f"/{key}/reference", ref["reference"]
    return None


def _patient_id(ref: str, known: Mapping[str, int]) -> str | None:
    if ref.startswith("urn:uuid:"):
        pid = ref[len("urn:uuid:") :]
        return pid if pid in known else None
    key = reference_key(ref)
    if key is None or not key.startswith("Patient/"):
        return None
    pid = key.split("/", 1)[1]
    return pid if pid in known else None


_SHARED_CACHE: dict[tuple[str, float], dict[str, tuple[str, dict[str, Any]]]] = {}  # one per process, like its engine


def _shared_index(path: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """``Type/id`` -> (source, resource) of the resources no patient owns, read once per process."""
    key = (path, Path(path).stat().st_mtime)
    if key not in _SHARED_CACHE:
        _SHARED_CACHE.clear()
        index: dict[str, tuple[str, dict[str, Any]]] = {}
        with open(path, "rb") as fh:
            for line in fh:
                item = json.loads(line)
                resource = item["r"]
                if isinstance(resource.get("id"), str):
                    index.setdefault(f"{resource['resourceType']}/{resource['id']}", (item["s"], resource))
        _SHARED_CACHE[key] = index
    return _SHARED_CACHE[key]


def read_bulk_partition(part: Partition) -> Iterator[InputRecord]:
    """Each patient of the partition as a collection Bundle, in export order."""
    shared = _shared_index(part.shared)
    patients: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    with open(part.path, "rb") as fh:
        for line in fh:
            item = json.loads(line)
            patients.setdefault(item["p"], []).append((item["s"], item["r"]))
    if len(patients) != part.count:
        raise InputError(f"{part.path}: holds {len(patients)} patients, the plan says {part.count}")
    for pid, entries in patients.items():
        wanted: dict[str, tuple[str, dict[str, Any]]] = {}
        for _source, resource in entries:
            for ref in _references(resource):
                key = reference_key(ref) if not ref.startswith("#") else None
                if key is not None and key in shared and key not in wanted:
                    wanted[key] = shared[key]
        entries = entries + list(wanted.values())
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for _, r in entries]}
        yield InputRecord(entries[0][0], "bundle", bundle, patient_id=pid)


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield ref
        for item in value.values():
            if isinstance(item, dict | list):
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


__all__ = ["dumps_line", "plan_bulk", "read_bulk_partition", "resource_files"]
