"""What lint reports: the table of checks, the problems found, and their text, JSON and SARIF forms.

Exit codes follow the worst problem not ignored: ``2`` an error, ``1`` a warning,
``0`` clean (notes do not fail). SARIF 2.1.0 is what GitHub code scanning and most
CI dashboards read; an ignored hit is kept there as a suppressed result with its reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neurocds.version import __version__

LINT_FORMAT = "neurocds-lint/1"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


@dataclass(frozen=True)
class Check:
    code: str
    name: str
    level: str
    summary: str


_TABLE = [
    ("NCDS000", "unreadable-rule-file", "error", "A rule file cannot be read or does not match the ruleset schema."),
    ("NCDS001", "unknown-fact", "error", "A condition reads a fact path the facts schema does not define."),
    (
        "NCDS002",
        "never-concluded",
        "error",
        "A derived fact or finding is read, but no rule of the pack or its dependencies concludes it "
        "(and no compute hook declares it in pack.yaml).",
    ),
    (
        "NCDS003",
        "value-outside-schema",
        "error",
        "A threshold or value lies outside what the facts schema allows for the field (range, enum or type).",
    ),
    ("NCDS004", "contradictory-all", "error", "An `all` whose fact tests can never all be true together."),
    (
        "NCDS005",
        "constant-condition",
        "warning",
        "A test that is true (or false) for every value the facts schema allows: it only asks whether "
        "the fact is recorded (or can never be true).",
    ),
    ("NCDS006", "derived-never-read", "warning", "A derived fact is concluded but no installed pack's rule reads it."),
    (
        "NCDS007",
        "duplicate-rule",
        "warning",
        "Two rules for one finding where one adds nothing: the same condition, or a stricter one at no higher urgency.",
    ),
    (
        "NCDS008",
        "urgency-differs",
        "warning",
        "One finding is concluded at different urgencies; say why in a reasoned ignore in pack.yaml.",
    ),
    (
        "NCDS009",
        "thin-urgent-rule",
        "error",
        "An emergency or urgent rule without evidence, a rationale (20 characters or more) or recommendations.",
    ),
    ("NCDS010", "pack-metadata", "warning", "pack.yaml is missing, incomplete, or disagrees with the registered pack."),
    ("NCDS011", "unused-ignore", "note", "A lint ignore in pack.yaml matches no hit."),
    (
        "NCDS012",
        "undeclared-compute",
        "error",
        "The pack's plugin computes facts (neurocds_compute_facts) but pack.yaml declares no computed_facts "
        "with the fact paths each one reads.",
    ),
]
CHECKS: dict[str, Check] = {row[0]: Check(*row) for row in _TABLE}
EXIT_CODE = {"error": 2, "warning": 1, "note": 0}


@dataclass
class Problem:
    code: str
    pack: str
    file: str
    pointer: str
    target: str
    message: str
    line: int = 1
    ignored_because: str | None = None

    @property
    def level(self) -> str:
        return CHECKS[self.code].level

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["level"], out["name"] = self.level, CHECKS[self.code].name
        if out["ignored_because"] is None:
            del out["ignored_because"]
        return out


@dataclass
class LintReport:
    packs: list[str]
    problems: list[Problem] = field(default_factory=list)

    @property
    def active(self) -> list[Problem]:
        return [p for p in self.problems if p.ignored_because is None]

    def count(self, level: str) -> int:
        return sum(1 for p in self.active if p.level == level)

    @property
    def exit_code(self) -> int:
        return max((EXIT_CODE[p.level] for p in self.active), default=0)

    def summary(self) -> str:
        ignored = len(self.problems) - len(self.active)
        counts = ", ".join(f"{self.count(level)} {level}s" for level in ("error", "warning", "note"))
        return f"{len(self.packs)} pack(s) linted: {counts}, {ignored} ignored with a reason"


def _shown(file: str, root: Path | None) -> str:
    if root is None or not file:
        return file
    try:
        return str(Path(file).resolve().relative_to(root.resolve()))
    except ValueError:
        return file


def to_text(report: LintReport, root: Path | None = None, show_ignored: bool = False) -> str:
    lines = []
    for p in report.problems:
        if p.ignored_because is not None and not show_ignored:
            continue
        tail = f"  [ignored: {p.ignored_because}]" if p.ignored_because is not None else ""
        lines.append(f"{_shown(p.file, root)}:{p.line}: {p.level} {p.code} {CHECKS[p.code].name}: {p.message}{tail}")
    return "\n".join([*lines, report.summary()]) + "\n"


def to_json(report: LintReport, root: Path | None = None) -> str:
    problems = [dict(p.to_dict(), file=_shown(p.file, root)) for p in report.problems]
    counts = {level: report.count(level) for level in ("error", "warning", "note")}
    doc = {"format": LINT_FORMAT, "packs": report.packs, "summary": counts, "problems": problems}
    return json.dumps(doc, indent=2) + "\n"


def to_sarif(report: LintReport, root: Path | None = None) -> str:
    rules = [
        {
            "id": c.code,
            "name": c.name,
            "shortDescription": {"text": c.summary},
            "defaultConfiguration": {"level": c.level},
            "helpUri": "https://neurocds.invalid/docs/pack-authoring.md#lint",
        }
        for c in CHECKS.values()
    ]
    results = []
    for p in report.problems:
        result: dict[str, Any] = {
            "ruleId": p.code,
            "ruleIndex": list(CHECKS).index(p.code),
            "level": p.level,
            "message": {"text": p.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": Path(_shown(p.file, root)).as_posix()},
                        "region": {"startLine": p.line},
                    },
                    "logicalLocations": [
                        {"name": p.target, "kind": "member", "fullyQualifiedName": f"{p.pack}/{p.target}"}
                    ],
                }
            ],
            "properties": {"pack": p.pack, "pointer": p.pointer},
        }
        if p.ignored_because is not None:
            result["suppressions"] = [{"kind": "inSource", "justification": p.ignored_because}]
        results.append(result)
    tool = {
        "driver": {
            "name": "neurocds-lint",
            "version": __version__,
            "informationUri": "https://neurocds.invalid",
            "rules": rules,
        }
    }
    doc = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": tool, "results": results}]}
    return json.dumps(doc, indent=2) + "\n"
