"""One error tree for every failure a caller may need to handle.

``NeurocdsError`` is the root; each subclass carries the data a caller needs
to act on the failure without parsing the message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Violation:
    """One problem with an input document, located by its JSON pointer.

    :param pointer: RFC 6901 JSON pointer of the offending value ("" is the root).
    :param message: plain-language statement of what is wrong.
    :param expected: what the contract requires there (short, human readable).
    :param found: what the document holds there, summarised; never the raw value
        when the value may be sensitive (callers that log must drop it).
    :param code: stable machine-readable kind (``type``, ``required``, ``enum`` ...).
    """

    pointer: str
    message: str
    expected: str | None = None
    found: str | None = None
    code: str = "invalid"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pointer": self.pointer, "message": self.message, "code": self.code}
        if self.expected is not None:
            out["expected"] = self.expected
        if self.found is not None:
            out["found"] = self.found
        return out


class NeurocdsError(Exception):
    """Root of every error neurocds raises on purpose."""


class FactsValidationError(NeurocdsError):
    """The facts document was rejected; ``violations`` lists every problem at once.

    :param facts_sha256: the hash of the document's canonical form, or a function that
        computes it the first time it is read (hashing a large document costs more
        than refusing it, and most callers never read the hash).
    :param truncated: more problems exist than are listed: collection stopped at a
        bound so that refusing a hostile document stays cheap.
    """

    def __init__(
        self,
        violations: list[Violation],
        *,
        facts_sha256: str | Callable[[], str | None] | None = None,
        truncated: bool = False,
    ) -> None:
        self.violations = list(violations)
        self._facts_sha256 = facts_sha256
        self.truncated = truncated
        first = self.violations[0] if self.violations else None
        head = f"{first.pointer or '/'}: {first.message}" if first else "invalid facts"
        more = f" (+{len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        if truncated:
            more = f" (+{len(self.violations) - 1} more, and further problems not listed)"
        super().__init__(f"invalid facts document: {head}{more}")

    @property
    def facts_sha256(self) -> str | None:
        """SHA-256 of the document's canonical JSON; ``None`` when it has none (not plain JSON)."""
        if callable(self._facts_sha256):
            self._facts_sha256 = self._facts_sha256()
        return self._facts_sha256

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errors": [v.to_dict() for v in self.violations]}
        if self.truncated:
            out["truncated"] = True
        return out


class PackLoadError(NeurocdsError):
    """A rule pack could not be loaded, registered or compiled.

    :param pack: name of the pack at fault (or ``None`` when unknown).
    :param source: where the pack came from (entry point, module, file path).
    :param pointer: JSON pointer into the offending rule file, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        pack: str | None = None,
        source: str | None = None,
        pointer: str | None = None,
        file: str | None = None,
    ) -> None:
        self.pack = pack
        self.source = source
        self.pointer = pointer
        self.file = file
        where = ", ".join(
            part
            for part in (
                f"pack {pack!r}" if pack else "",
                f"from {source}" if source else "",
                f"file {file}" if file else "",
                f"at {pointer}" if pointer is not None else "",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)


# Every error a result can carry has one of these kinds (``errors[].kind`` in
# schemas/result.schema.json and the audit record schema, which list the same set):
# a pack failed at load, was skipped because a pack it depends on failed, its
# compute hook raised; a rule action raised, the firing budget ran out, the
# durable backend failed, or the two backends disagree.
LOAD_ERROR_KINDS = ("pack_load", "pack_skipped", "compute_hook")
RULE_ERROR_KINDS = ("action", "budget", "backend", "disagreement")
ERROR_KINDS = LOAD_ERROR_KINDS + RULE_ERROR_KINDS


class PacksUnavailable(PackLoadError):
    """Packs that were asked for cannot load because they, or a pack they need, are absent.

    :param unavailable: the names of the packs asked for that cannot be loaded.
    """

    def __init__(self, message: str, *, unavailable: frozenset[str], **where: Any) -> None:
        self.unavailable = frozenset(unavailable)
        super().__init__(message, **where)


class RuleEvaluationError(NeurocdsError):
    """Evaluating a rule failed (an action raised, a budget ran out, backends disagree).

    :param rule: the stable rule id at fault, when one is known.
    :param pack: the pack that owns the rule.
    :param kind: stable machine-readable kind, one of :data:`RULE_ERROR_KINDS`.
    """

    def __init__(self, message: str, *, rule: str | None = None, pack: str | None = None, kind: str = "action") -> None:
        if kind not in RULE_ERROR_KINDS:
            raise ValueError(f"unknown rule error kind {kind!r}")
        self.rule = rule
        self.pack = pack
        self.kind = kind
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "rule": self.rule, "pack": self.pack, "message": str(self)}


_KIND_OF_STAGE = {"load": "pack_load", "compute_facts": "compute_hook"}


@dataclass
class PackFailure:
    """A pack that failed during one evaluation; the others still ran.

    :param stage: where it failed: ``load`` or ``compute_facts`` (a rule error found
        while evaluating is reported as that rule error, which names its pack).
    :param kind: one of :data:`ERROR_KINDS`; by default the one its stage implies.
    """

    pack: str
    stage: str
    message: str
    rule: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is None:
            self.kind = _KIND_OF_STAGE.get(self.stage)
        if self.kind not in ERROR_KINDS:
            raise ValueError(f"pack failure at stage {self.stage!r} needs a known kind, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """The result's error shape: ``kind``, ``stage``, ``pack``, ``message`` (and ``rule``)."""
        out: dict[str, Any] = {"kind": self.kind, "stage": self.stage, "pack": self.pack, "message": self.message}
        if self.rule:
            out["rule"] = self.rule
        return out
