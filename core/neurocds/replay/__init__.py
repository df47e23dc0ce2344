"""Replay: re-evaluate a recorded decision and compare the outcome with the record.

A capability on top of the engine and the audit log: it reads a record
(``neurocds.audit``) and runs today's engine (``neurocds.engine``) on the facts
it holds. May import: every stage and ``neurocds.engine``; only the CLI imports it.

A replay is only meaningful with the same rules: by default it refuses when an
installed pack's version or content hash differs from the recorded one, or a
recorded pack is no longer installed. ``compare=True`` evaluates anyway, without
the packs that are gone (their findings then disappear, and the outcome says
which packs those were), and reports how the findings changed between the
recorded and the current pack versions: findings added or removed, urgencies
changed, and findings whose shown wording (title, detail, next steps, evidence)
changed. Across pack versions the trace and missing-data list nearly always differ
(new rules wait on new facts), so the outcome also says whether the findings
themselves, at their urgencies, are the same as recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from neurocds.audit._canon import normalise
from neurocds.audit.errors import ReplayRefused
from neurocds.audit.query import body_of
from neurocds.errors import NeurocdsError, PacksUnavailable

# What a reader sees of a finding; a change here with the same urgency is a wording change.
SHOWN_FINDING_FIELDS = ("title", "detail", "recommendations", "evidence")
# The parts of a result that must match for a replay to count as identical
# (ids and timestamps are new on every evaluation, so they are left out).
COMPARED_FIELDS = (
    "facts_sha256",
    "highest_urgency",
    "complete",
    "findings",
    "derived",
    "missing_data",
    "errors",
    "trace",
)

EngineFactory = Callable[[list[str], Mapping[str, Any]], Any]


@dataclass
class ReplayOutcome:
    decision_id: str
    sequence: int
    identical: bool
    pack_differences: list[dict[str, Any]] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    urgency_changed: list[dict[str, Any]] = field(default_factory=list)
    wording_changed: list[dict[str, Any]] = field(default_factory=list)
    differing_fields: list[str] = field(default_factory=list)
    not_installed: list[str] = field(default_factory=list)  # recorded packs left out (compare only)

    @property
    def same_findings(self) -> bool:
        """The same finding ids at the same urgencies as recorded (wording may differ)."""
        return not (self.added or self.removed or self.urgency_changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "sequence": self.sequence,
            "identical": self.identical,
            "pack_differences": self.pack_differences,
            "not_installed": self.not_installed,
            "findings": {
                "added": self.added,
                "removed": self.removed,
                "urgency_changed": self.urgency_changed,
                "wording_changed": self.wording_changed,
                "same_findings": self.same_findings,
            },
            "differing_fields": self.differing_fields,
        }


def default_engine_factory(packs: list[str], engine_info: Mapping[str, Any]) -> Any:
    """Build ``neurocds.Engine`` with the recorded packs and backend; no audit log.

    A pack that fails to load is reported in the result, as it was when the decision
    was made, so an incomplete decision replays as the same incomplete decision.
    """
    try:
        from neurocds.engine import Engine  # lazy: listing and comparing need no engine
    except ImportError as exc:
        raise ReplayRefused("the neurocds engine is not available, so nothing can be replayed") from exc
    kwargs: dict[str, Any] = {"packs": packs, "audit_dir": None, "on_pack_error": "skip"}
    if engine_info.get("backend"):
        kwargs["backend"] = engine_info["backend"]
    if isinstance(engine_info.get("verified"), bool):
        kwargs["verify"] = engine_info["verified"]
    return Engine(**kwargs)


def pack_differences(
    recorded: Sequence[Mapping[str, Any]], installed: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Packs whose version or content hash differs, or that exist on one side only."""
    rec = {p.get("name"): p for p in recorded}
    now = {p.get("name"): p for p in installed}
    out = []
    for name in sorted(set(rec) | set(now), key=str):
        a, b = rec.get(name), now.get(name)
        ka = (a.get("version"), a.get("sha256")) if a else None
        kb = (b.get("version"), b.get("sha256")) if b else None
        if ka != kb:
            out.append(
                {
                    "name": name,
                    "recorded": {"version": ka[0], "sha256": ka[1]} if ka else None,
                    "installed": {"version": kb[0], "sha256": kb[1]} if kb else None,
                }
            )
    return out


def finding_changes(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(added, removed, urgency_changed) between two finding lists, keyed by id."""
    a = {f.get("id"): f for f in old}
    b = {f.get("id"): f for f in new}
    added = [{"id": i, "urgency": b[i].get("urgency")} for i in b if i not in a]
    removed = [{"id": i, "urgency": a[i].get("urgency")} for i in a if i not in b]
    changed = [
        {"id": i, "recorded": a[i].get("urgency"), "current": b[i].get("urgency")}
        for i in a
        if i in b and a[i].get("urgency") != b[i].get("urgency")
    ]
    return added, removed, changed


def wording_changes(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Findings present on both sides at the same urgency whose shown text changed, naming the fields."""
    a = {f.get("id"): f for f in old}
    out = []
    for finding in new:
        before = a.get(finding.get("id"))
        if before is None or before.get("urgency") != finding.get("urgency"):
            continue
        fields = [k for k in SHOWN_FINDING_FIELDS if before.get(k) != finding.get(k)]
        if fields:
            out.append({"id": finding.get("id"), "fields": fields})
    return out


def replay_decision(
    record: Mapping[str, Any],
    *,
    compare: bool = False,
    engine_factory: EngineFactory | None = None,
) -> ReplayOutcome:
    """Re-evaluate the recorded facts and compare with the recorded decision.

    :raises ReplayRefused: not a decision, facts redacted, engine missing, or the
        installed packs differ and ``compare`` is false.
    """
    seq = int(record.get("sequence") or 0)
    if record.get("type") != "decision":
        raise ReplayRefused("only decision records can be replayed", sequence=seq)
    body = body_of(record)
    if body.get("redacted") or not isinstance(body.get("facts"), dict):
        raise ReplayRefused(
            "the record is redacted: it holds only the facts' hash, so there is nothing to re-evaluate",
            sequence=seq,
        )
    recorded_packs = [p for p in body.get("packs") or () if isinstance(p, Mapping)]
    engine, gone = _engine_for(
        [str(p.get("name")) for p in recorded_packs],
        body.get("engine") or {},
        engine_factory or default_engine_factory,
        compare=compare,
        sequence=seq,
    )
    installed = list(engine.pack_infos())
    diffs = pack_differences(recorded_packs, installed)
    if diffs and not compare:
        described = "; ".join(
            f"{d['name']}: recorded {describe_pack(d['recorded'])}, installed {describe_pack(d['installed'])}"
            for d in diffs
        )
        raise ReplayRefused(
            f"installed packs differ from the recorded ones ({described}); use --compare to "
            "see how the findings change",
            sequence=seq,
        )
    result = engine.evaluate(body["facts"], trace=_trace_was_on(body))
    new = normalise(result.to_dict() if hasattr(result, "to_dict") else dict(result))
    old = normalise({k: body.get(k) for k in COMPARED_FIELDS})
    for side in (old, new):
        # Where the facts came from (e.g. FHIR resources) is input metadata, not
        # part of the decision, and a replay from the stored facts has none.
        if isinstance(side.get("trace"), dict):
            side["trace"].pop("input_provenance", None)
    old_findings = [f for f in old.get("findings") or () if isinstance(f, dict)]
    new_findings = [f for f in new.get("findings") or () if isinstance(f, dict)]
    added, removed, changed = finding_changes(old_findings, new_findings)
    differing = [k for k in COMPARED_FIELDS if old.get(k) != new.get(k)]
    return ReplayOutcome(
        decision_id=str(body.get("decision_id")),
        sequence=seq,
        identical=not differing and not diffs,
        pack_differences=diffs,
        added=added,
        removed=removed,
        urgency_changed=changed,
        wording_changed=wording_changes(old_findings, new_findings),
        differing_fields=differing,
        not_installed=gone,
    )


def _engine_for(
    names: list[str], info: Mapping[str, Any], factory: EngineFactory, *, compare: bool, sequence: int
) -> tuple[Any, list[str]]:
    """An engine with the recorded packs, and (``compare`` only) those left out because
    they, or a pack they need, are no longer installed."""
    gone: list[str] = []
    while True:  # ends: every round either returns or leaves out at least one more pack
        try:
            return factory(names, info), gone
        except ReplayRefused:
            raise
        except PacksUnavailable as exc:
            absent = sorted(exc.unavailable & set(names))
            if not compare or not absent:
                raise ReplayRefused(
                    f"the recorded packs cannot be loaded now: {exc}; use --compare to replay without them",
                    sequence=sequence,
                ) from exc
            gone += absent
            names = [n for n in names if n not in exc.unavailable]
        except NeurocdsError as exc:
            raise ReplayRefused(f"the recorded packs cannot be loaded now: {exc}", sequence=sequence) from exc


def _trace_was_on(body: Mapping[str, Any]) -> bool:
    """Whether the recorded evaluation made the why-not trace (``--no-trace`` records
    ``{"omitted": true}`` in its place); a replay must evaluate the same way."""
    trace = body.get("trace")
    return not (isinstance(trace, Mapping) and trace.get("omitted") is True)


def describe_pack(side: Mapping[str, Any] | None) -> str:
    """A pack's version and short content hash (``1.2.0 (sha256 3fa1c09b2e7d)``), or ``absent``."""
    if side is None:
        return "absent"
    return f"{side.get('version')} (sha256 {str(side.get('sha256'))[:12]})"


def format_replay(outcome: Any) -> str:
    """A replay outcome as the text `neurocds audit replay` prints."""
    lines = [f"replay of decision {outcome.decision_id} (sequence {outcome.sequence})"]
    for d in outcome.pack_differences:
        now = f"installed {describe_pack(d['installed'])}" if d["installed"] else "not installed now"
        lines.append(f"  pack {d['name']}: recorded {describe_pack(d['recorded'])}, {now}")
    for name in outcome.not_installed:
        lines.append(f"  pack {name} was left out of the replay: its findings cannot appear below")
    if outcome.identical:
        lines.append("IDENTICAL: the replay reproduces the recorded decision exactly")
        return "\n".join(lines)
    for f in outcome.added:
        lines.append(f"  + added finding {f['id']} [{f['urgency']}]")
    for f in outcome.removed:
        lines.append(f"  - removed finding {f['id']} [{f['urgency']}]")
    for f in outcome.urgency_changed:
        lines.append(f"  ~ urgency of {f['id']}: {f['recorded']} -> {f['current']}")
    for f in getattr(outcome, "wording_changed", ()):
        lines.append(f"  ~ wording of {f['id']} changed ({', '.join(f['fields'])})")
    if outcome.pack_differences:
        # Across pack versions the trace nearly always differs; say first whether the findings do.
        if outcome.added or outcome.removed or outcome.urgency_changed:
            lines.append("CHANGED FINDINGS: the findings or their urgencies differ from the record (listed above)")
        else:
            lines.append("SAME FINDINGS: the same findings at the same urgencies as recorded")
    if outcome.differing_fields:
        lines.append("DIFFERENT: " + ", ".join(outcome.differing_fields) + " differ from the record")
    else:
        lines.append("same outcome, but with different pack versions")
    return "\n".join(lines)
