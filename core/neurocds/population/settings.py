"""What a population run evaluates with: packs, backend, clock, output shape.

:class:`RunSettings` is small, frozen and picklable: it travels to every worker
process (local or Dask) and keys the one engine each process keeps.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from neurocds.fhir.dates import parse_instant

DEFAULT_WINDOW_DAYS = 30.0
# Records per partition, by input kind: a facts line is ~1 KB and ~1 ms of work; a
# FHIR Bundle can be megabytes and takes tens of ms to read and convert.
DEFAULT_PARTITION_SIZE = {"facts-ndjson": 1000, "facts-files": 500, "fhir-bundles": 25, "bulk": 200}
# Seconds a pack's hooks may take per patient. The engine's default (0.2 s of CPU per pack, 1 s
# of wall time for a pack that blocks) suits a CDS Hooks answer; a sweep has nobody waiting,
# and on a busy machine a hook that waited for a core past 0.2 s would turn a patient's result
# incomplete, so that the same inputs gave another answer. A hook that hangs still costs one
# wait (later calls fail at once).
DEFAULT_SWEEP_HOOK_BUDGET = 5.0


@dataclass(frozen=True)
class RunSettings:
    """How every patient of a run is evaluated.

    :param packs: allowlist of pack names (``None``: every installed pack).
    :param backend: ``"durable"`` (verified by the reference evaluator unless ``verify``
        is off) or ``"reference"``, the faster path for sweeps; ``None``: the engine's default.
    :param verify: with the durable backend, also run the reference evaluator.
    :param now: RFC 3339 instant for FHIR recency decisions, or ``"latest"`` (just after
        each patient's latest record). ``None`` is resolved once, at the start of the run,
        to the wall clock, and recorded, so every patient of a run sees the same "now".
    :param window_days: how old an Observation may be and still count (FHIR input).
    :param trace: include each result's explanation trace (the why-not of every rule
        that did not fire: most of a result's size and a third of its cost).
    :param slim: write a projection of each result (patient, urgency, findings) instead
        of the whole result document; the trace is not computed.
    :param partition_size: records per partition (``None``: a default per input kind).
    :param hook_budget: CPU seconds each pack's hooks may spend per patient, with the engine's
        wall-clock limit behind it (see :data:`DEFAULT_SWEEP_HOOK_BUDGET`).
    """

    packs: tuple[str, ...] | None = None
    backend: str | None = None
    verify: bool = True
    now: str | None = None
    window_days: float = DEFAULT_WINDOW_DAYS
    trace: bool = True
    slim: bool = False
    partition_size: int | None = None
    hook_budget: float = DEFAULT_SWEEP_HOOK_BUDGET

    def __post_init__(self) -> None:
        if self.backend not in (None, "durable", "reference"):
            raise ValueError(f"backend must be 'durable' or 'reference', not {self.backend!r}")
        if not math.isfinite(self.window_days) or self.window_days <= 0:
            raise ValueError("window_days must be a positive number")
        if not math.isfinite(self.hook_budget) or self.hook_budget <= 0:
            raise ValueError("hook_budget must be a positive number of seconds")
        if self.partition_size is not None and self.partition_size < 1:
            raise ValueError("partition_size must be at least 1")
        if self.now not in (None, "latest"):
            try:
                parse_instant(self.now)
            except ValueError as exc:
                raise ValueError(f"now {exc}") from None

    def resolved(self) -> RunSettings:
        """These settings with ``now`` fixed (the wall clock, once, when it was not given)."""
        if self.now is not None:
            return self
        return replace(self, now=format_instant(datetime.now(UTC)))

    def engine_kwargs(self) -> dict[str, Any]:
        return {
            "packs": list(self.packs) if self.packs is not None else None,
            "backend": self.backend,
            "verify": self.verify,
            "hook_budget": self.hook_budget,
        }

    def engine_key(self) -> str:
        """What decides the engine (packs, backend, verify, hook budget): runs that differ only in output share one."""
        return json.dumps(self.engine_kwargs(), sort_keys=True)

    def partition_size_for(self, kind: str) -> int:
        return self.partition_size or DEFAULT_PARTITION_SIZE[kind]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["packs"] = list(self.packs) if self.packs is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        packs = data.get("packs")
        return cls(**{**data, "packs": tuple(packs) if packs is not None else None})


def format_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
