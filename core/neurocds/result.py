"""The result of one evaluation: a JSON document (``schemas/result.schema.json``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

from neurocds.facts.canonical import json_text
from neurocds.rules.ruleset import URGENCY_RANK

DISCLAIMER = (
    "Decision support for a clinician, not a diagnosis. These findings are prompts to "
    "consider, based only on the facts supplied; absent facts were treated as unknown. "
    "Clinical judgement decides."
)


def new_evaluation_id() -> str:
    """A random RFC 4122 version-4 UUID as text: what ``str(uuid.uuid4())`` gives, at less than half
    its cost (``uuid.UUID``'s checks and integer conversions were 21,000 instructions an evaluation)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class EvaluationClock:
    """``evaluated_at`` text: UTC, milliseconds, ``Z`` (as ``datetime.now(UTC).isoformat``
    with ``timespec="milliseconds"`` writes it, ``+00:00`` as ``Z``).

    Formatting a datetime cost 18,000 instructions an evaluation; the text up to the
    second is kept and reused while the second lasts, so most evaluations only add the
    milliseconds. One per Engine; the kept pair is replaced whole, so threads may share it.
    """

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def now(self) -> str:
        ms = time.time_ns() // 1_000_000
        second, prefix = self._second
        if ms // 1000 != second:
            second = ms // 1000
            prefix = datetime.fromtimestamp(second, UTC).isoformat()[:-6]  # without "+00:00"
            self._second = (second, prefix)
        return f"{prefix}.{ms % 1000:03d}Z"


def highest_urgency(findings: Iterable[Mapping[str, Any]]) -> str:
    best = "none"
    for finding in findings:
        if URGENCY_RANK[finding["urgency"]] > URGENCY_RANK[best]:
            best = finding["urgency"]
    return best


class Result:
    """A thin, read-only view over the result document."""

    def __init__(self, data: dict[str, Any], deferred: Mapping[str, Callable[[], Any]] | None = None):
        """``deferred``: members of ``data`` (already present, as placeholders, so the document
        keeps its member order) built only when first asked for: the explanation (findings and
        derived facts with their ``because``, the missing data, the why/why-not trace) costs
        more than the rule evaluation itself, and many callers read only part of it."""
        self._data = data
        self._deferred = dict(deferred) if deferred else {}

    def to_dict(self) -> dict[str, Any]:
        for key in list(self._deferred):
            self._member(key)
        return self._data

    def _member(self, key: str) -> Any:
        build = self._deferred.pop(key, None)
        if build is not None:
            self._data[key] = build()
        return self._data[key]

    def to_json(self, *, indent: int | None = 2) -> str:
        """The result document as JSON text: the same text ``json.dumps`` writes, by orjson where it can."""
        return json_text(self.to_dict(), indent=indent)

    @property
    def evaluation_id(self) -> str:
        return cast("str", self._data["evaluation_id"])

    @property
    def complete(self) -> bool:
        return bool(self._data["complete"])

    @property
    def highest_urgency(self) -> str:
        return cast("str", self._data["highest_urgency"])

    @property
    def findings(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._member("findings"))

    @property
    def finding_ids(self) -> list[str]:
        return [f["id"] for f in self.findings]

    @property
    def derived(self) -> dict[str, Any]:
        return {d["name"]: d["value"] for d in self._member("derived")}

    @property
    def missing_data(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._member("missing_data"))

    @property
    def errors(self) -> list[dict[str, Any]]:
        return cast("list[dict[str, Any]]", self._data["errors"])

    def finding(self, finding_id: str) -> dict[str, Any] | None:
        return next((f for f in self.findings if f["id"] == finding_id), None)

    def __repr__(self) -> str:
        return (
            f"Result(highest_urgency={self.highest_urgency!r}, complete={self.complete}, findings={self.finding_ids!r})"
        )
