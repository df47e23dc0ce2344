"""Case files: facts documents with the answer the engine must give, checked one case at a time.

A case file (``*.case.yaml``, or any file a project's glob names) holds one case, or
several under ``cases:``. A case is a facts-v1 document plus expectations; the
three-valued ones matter most for decision support: a finding that must stay
*undecided*, facts that must be listed as *missing*, and whether the result is
*complete*. A ``matrix:`` expands one case into many (one per combination of
values, ``null`` meaning "not recorded"), each with a readable id.

::

    name: fires-on-low-level
    description: why this case exists
    facts: {facts_version: "1", patient: {id: p1}, labs: {b12: 120}}
    matrix: {labs.b12: [100, 149]}          # optional
    expect_present: [demo.low_level]
    expect_absent: [demo.other]
    expect_undecided: [demo.third]
    expect_urgency: {demo.low_level: routine}
    expect_highest_urgency: routine
    expect_missing: [/labs/folate]
    expect_not_missing: [/labs/b12]
    expect_complete: true                   # the default
    expect_derived: {demo.flag: true}
    expect_detail_contains: {demo.low_level: "text"}
    expect_detail_excludes: {demo.low_level: ["misleading text"]}
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurocds.engine import Engine
from neurocds.errors import NeurocdsError
from neurocds.result import Result
from neurocds.rules.ruleset import URGENCY_RANK

# Expectation key -> the JSON type its value must have (checked when the file is read).
EXPECTATIONS: dict[str, type] = {
    "expect_present": list,
    "expect_absent": list,
    "expect_undecided": list,
    "expect_urgency": dict,
    "expect_highest_urgency": str,
    "expect_missing": list,
    "expect_not_missing": list,
    "expect_complete": bool,
    "expect_derived": dict,
    "expect_detail_contains": dict,
    "expect_detail_excludes": dict,
}
# What each expectation asks of the result (the pack author's guide prints this table).
EXPECTATION_HELP = {
    "expect_present": "findings that must fire",
    "expect_absent": "findings that must not fire (undecided counts as not fired)",
    "expect_undecided": "findings some rule of which must wait on unrecorded facts (none fired)",
    "expect_urgency": "finding id -> the urgency it must fire at",
    "expect_highest_urgency": "the result's highest urgency (emergency, urgent, routine, info, none)",
    "expect_missing": "JSON pointers that must be listed in missing_data",
    "expect_not_missing": "JSON pointers that must not be listed in missing_data",
    "expect_complete": "whether the result must be complete, with no error (default true)",
    "expect_derived": "derived-fact name -> the value it must have (null: it must not be derived)",
    "expect_detail_contains": "finding id -> text its detail must contain",
    "expect_detail_excludes": "finding id -> texts its detail must not contain",
}
CASE_KEYS = frozenset({"name", "description", "facts", "matrix", *EXPECTATIONS})
FILE_KEYS = frozenset({"description", "cases"})
# Expectations that name findings: a misspelt id would otherwise pass vacuously.
FINDING_KEYS = (
    "expect_present",
    "expect_absent",
    "expect_undecided",
    "expect_urgency",
    "expect_detail_contains",
    "expect_detail_excludes",
)
CASE_SUFFIX = ".case.yaml"


class CaseFileError(NeurocdsError):
    """A case file that cannot be read or does not have the case-file shape."""

    def __init__(self, message: str, *, file: str, pointer: str = "") -> None:
        self.file, self.pointer = file, pointer
        super().__init__(f"{file}{' ' + pointer if pointer else ''}: {message}")


@dataclass(frozen=True)
class Case:
    """One case to run (a matrix case is already expanded): its id, facts and expectations."""

    id: str
    file: str
    description: str
    facts: dict[str, Any]
    expect: dict[str, Any]

    def named_findings(self) -> set[str]:
        names: set[str] = set()
        for key in FINDING_KEYS:
            names.update(self.expect.get(key, ()))
        return names


def case_stem(path: Path) -> str:
    """The file's name without ``.case.yaml`` (or its last suffix)."""
    return path.name[: -len(CASE_SUFFIX)] if path.name.endswith(CASE_SUFFIX) else path.stem


def load_case_file(path: Path) -> list[Case]:
    """Every case in the file, matrices expanded, in file order."""
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CaseFileError(f"cannot read case file: {exc}", file=where) from exc
    if not isinstance(doc, dict):
        raise CaseFileError("a case file is a mapping (one case, or 'cases:' with a list)", file=where)
    if "cases" in doc:
        unknown = set(doc) - FILE_KEYS
        if unknown:
            raise CaseFileError(f"unknown keys beside 'cases': {sorted(unknown)}", file=where)
        raw_cases = doc["cases"]
        if not isinstance(raw_cases, list) or not raw_cases:
            raise CaseFileError("'cases' must be a non-empty list", file=where, pointer="/cases")
        pointers = [f"/cases/{i}" for i in range(len(raw_cases))]
    else:
        raw_cases, pointers = [doc], [""]
    cases: list[Case] = []
    for raw, pointer in zip(raw_cases, pointers, strict=True):
        cases.extend(_expand(raw, path, pointer, several=len(raw_cases) > 1))
    ids = [c.id for c in cases]
    duplicate = sorted({i for i in ids if ids.count(i) > 1})
    if duplicate:
        raise CaseFileError(f"case names must be unique in a file: {duplicate}", file=where)
    return cases


def _expand(raw: Any, path: Path, pointer: str, several: bool) -> list[Case]:
    where = str(path)
    if not isinstance(raw, dict):
        raise CaseFileError("a case is a mapping", file=where, pointer=pointer)
    unknown = set(raw) - CASE_KEYS
    if unknown:
        raise CaseFileError(f"unknown case keys {sorted(unknown)}", file=where, pointer=pointer)
    if "facts" not in raw or not isinstance(raw["facts"], dict):
        raise CaseFileError("a case needs 'facts' (a facts document)", file=where, pointer=pointer + "/facts")
    if several and "name" not in raw:
        raise CaseFileError("each case of a several-case file needs a 'name'", file=where, pointer=pointer)
    for key, kind in EXPECTATIONS.items():
        if key in raw and not isinstance(raw[key], kind):
            raise CaseFileError(f"{key} must be a {kind.__name__}", file=where, pointer=f"{pointer}/{key}")
    expect = {k: raw[k] for k in EXPECTATIONS if k in raw}
    if not set(expect) - {"expect_complete"}:
        raise CaseFileError("a case must expect something (expect_present, expect_absent, ...)", file=where)
    name = str(raw.get("name", case_stem(path)))
    description = str(raw.get("description", ""))
    matrix = raw.get("matrix")
    if matrix is None:
        return [Case(name, where, description, raw["facts"], expect)]
    if not isinstance(matrix, dict) or not matrix or not all(isinstance(v, list) and v for v in matrix.values()):
        raise CaseFileError("matrix maps fact paths to non-empty lists of values", file=where, pointer=pointer)
    out = []
    for combination in itertools.product(*matrix.values()):
        facts = copy.deepcopy(raw["facts"])
        label = []
        for dotted, value in zip(matrix, combination, strict=True):
            _set_path(facts, str(dotted).split("."), value)
            label.append(f"{dotted}={'not-recorded' if value is None else _plain(value)}")
        out.append(Case(f"{name}[{','.join(label)}]", where, description, facts, expect))
    return out


def _set_path(doc: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set a dotted fact path; ``None`` removes it (the fact becomes unknown)."""
    node = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def _plain(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


# ----------------------------------------------------------------- checking
@dataclass(frozen=True)
class Row:
    """One line of the expected-vs-actual table."""

    expectation: str
    expected: str
    actual: str
    ok: bool


@dataclass
class Outcome:
    """What checking one case found: every row, and the reasons behind each failed finding."""

    case: Case
    result: Result
    rows: list[Row] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.ok for row in self.rows)

    def report(self) -> str:
        """The table of expected vs actual, then why each expected finding did not fire."""
        head = ("expectation", "expected", "actual")
        body = [(r.expectation, r.expected, r.actual) for r in self.rows]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(3)]

        def line(cells: Sequence[str], mark: str) -> str:
            return f"{mark} " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        lines = [f"case {self.case.id} ({self.case.file})", line(head, " ")]
        lines += [line(cells, " " if row.ok else "✗") for cells, row in zip(body, self.rows, strict=True)]
        return "\n".join([*lines, *self.reasons])


def finding_state(trace: Mapping[str, Any], finding_id: str) -> str:
    """'fired', 'undecided' (a rule for it waits on unrecorded facts), 'false', or 'no rule'."""
    if any(entry["concludes"].get("finding") == finding_id for entry in trace["fired"]):
        return "fired"
    states = {entry["state"] for entry in trace["not_fired"] if entry["concludes"].get("finding") == finding_id}
    if not states:
        return "no rule"
    return "undecided" if "unknown" in states else "false"


def check_case(
    case: Case, engine: Engine, known_findings: set[str], declared_reads: Mapping[str, Sequence[str]] | None = None
) -> Outcome:
    """Evaluate the case's facts and compare every expectation with the result.

    :param declared_reads: computed derived-fact name -> the dotted fact paths its pack's
        ``pack.yaml`` declares the compute hook reads; when given, a computed fact whose
        ``because`` names an undeclared path fails the case (the source-attribute sheet
        follows the declared paths, so they must be the real ones).
    """
    result = engine.evaluate(case.facts)
    data = result.to_dict()
    trace = data["trace"]
    outcome = Outcome(case, result)
    add = outcome.rows.append
    unknown = sorted(case.named_findings() - known_findings)
    if unknown:
        add(Row("finding ids are those of loaded rules", "all known", f"unknown: {', '.join(unknown)}", False))
    for key, wanted in (("expect_present", "fired"), ("expect_absent", "not fired"), ("expect_undecided", "undecided")):
        for finding_id in case.expect.get(key, ()):
            state = finding_state(trace, finding_id)
            ok = state != "fired" if wanted == "not fired" else state == wanted
            add(Row(f"finding {finding_id}", wanted, state, ok))
            if not ok:
                outcome.reasons.extend(why_fired(trace, finding_id) if state == "fired" else why_not(trace, finding_id))
    for finding_id, urgency in case.expect.get("expect_urgency", {}).items():
        found = result.finding(finding_id)
        got = found["urgency"] if found is not None else "not fired"
        add(Row(f"urgency of {finding_id}", urgency, got, got == urgency))
    if "expect_highest_urgency" in case.expect:
        wanted_urgency = case.expect["expect_highest_urgency"]
        ok = wanted_urgency in URGENCY_RANK and result.highest_urgency == wanted_urgency
        add(Row("highest urgency", wanted_urgency, result.highest_urgency, ok))
    _check_texts(case, result, add)
    listed = {item["pointer"] for item in result.missing_data}
    for pointer in case.expect.get("expect_missing", ()):
        add(Row(f"missing {pointer}", "listed", "listed" if pointer in listed else "not listed", pointer in listed))
    for pointer in case.expect.get("expect_not_missing", ()):
        add(
            Row(
                f"missing {pointer}",
                "not listed",
                "listed" if pointer in listed else "not listed",
                pointer not in listed,
            )
        )
    for name, value in case.expect.get("expect_derived", {}).items():
        if value is None:  # null: the fact must not be derived (its rules decided false or undecided)
            derived = name in result.derived
            add(Row(f"derived {name}", "not derived", _plain(result.derived[name]) if derived else "not derived",
                    not derived))  # fmt: skip
            continue
        got = result.derived.get(name, "unknown")
        add(Row(f"derived {name}", _plain(value), _plain(got), got == value and type(got) is type(value)))
    if declared_reads is not None:
        _check_declared_reads(data["derived"], declared_reads, add)
    complete = case.expect.get("expect_complete", True)
    actual = "complete" if result.complete and not result.errors else "incomplete"
    if result.errors:
        actual += " (" + "; ".join(str(e.get("message", e)) for e in result.errors) + ")"
    add(Row("result", "complete" if complete else "incomplete", actual, actual.startswith("complete") == complete))
    return outcome


def _check_declared_reads(
    derived: Sequence[Mapping[str, Any]], declared: Mapping[str, Sequence[str]], add: Any
) -> None:
    for entry in derived:
        if not entry.get("computed"):
            continue
        allowed = {"/" + path.replace(".", "/") for path in declared.get(entry["name"], ())}
        used = {item["pointer"] for item in entry["because"]}
        extra = sorted(used - allowed)
        shown = ", ".join(extra) if extra else "only declared paths"
        add(Row(f"computed {entry['name']} reads", "paths declared in pack.yaml", shown, not extra))


def _check_texts(case: Case, result: Result, add: Any) -> None:
    for finding_id, text in case.expect.get("expect_detail_contains", {}).items():
        found = result.finding(finding_id)
        detail = found["detail"] if found else ""
        add(
            Row(
                f"detail of {finding_id} contains",
                repr(text),
                "yes" if text in detail else repr(detail),
                bool(found) and text in detail,
            )
        )
    for finding_id, texts in case.expect.get("expect_detail_excludes", {}).items():
        found = result.finding(finding_id)
        shown = [t for t in texts if found and t in found["detail"]]
        add(
            Row(
                f"detail of {finding_id} excludes",
                repr(texts),
                f"says {shown}" if shown else ("ok" if found else "not fired"),
                bool(found) and not shown,
            )
        )


def why_not(trace: Mapping[str, Any], finding_id: str) -> list[str]:
    """For a finding that did not fire: each of its rules, the false conditions with the values read,
    or the unrecorded facts that left it undecided."""
    lines = [f"why {finding_id} did not fire:"]
    for entry in trace["not_fired"]:
        if entry["concludes"].get("finding") != finding_id:
            continue
        if entry["state"] == "false":
            lines.append(f"  rule {entry['rule']}: false")
            for item in entry["false_conditions"]:
                lines.append(f"    - {describe_item(item)}")
        else:
            met = f"{entry['conditions_met']}/{entry['conditions_total']} conditions met"
            lines.append(
                f"  rule {entry['rule']}: undecided ({met}); not recorded: {', '.join(entry['unknown_facts'])}"
            )
    if len(lines) == 1:
        lines.append("  no loaded rule concludes it")
    return lines


def why_fired(trace: Mapping[str, Any], finding_id: str) -> list[str]:
    """For a finding that fired against expectation: each rule that fired and the conditions it met."""
    lines = [f"why {finding_id} fired:"]
    for entry in trace["fired"]:
        if entry["concludes"].get("finding") == finding_id:
            lines.append(f"  rule {entry['rule']}: fired")
            lines += [f"    - {describe_item(item, concluded=True)}" for item in entry["because"]]
    return lines


def describe_item(item: Mapping[str, Any], concluded: bool = False) -> str:
    """One condition of a trace entry in words: the test and the value it read."""
    if "test" in item:
        read = f"read {_plain(item['value'])}" if item.get("recorded") else "not recorded"
        if item.get("recorded") and isinstance(item.get("value"), list):
            read = f"read {len(item['value'])} item(s)"
        return f"{item['test']}  ({read} at {item['pointer']})"
    if "derived" in item:
        value = item["value"]
        said = "" if value is True else f" = {_plain(value)}"
        return f"derived {item['derived']}{said}" + ("" if concluded else " (not concluded)")
    return f"finding {item.get('finding')}" + ("" if concluded else " (not concluded)")
