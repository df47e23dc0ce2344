"""What an auditor reads beside the why-tree: the input facts with where each came from, and
why each rule that did not fire did not, in words (the terminal's namer, not JSON pointers).

Built from the record alone (the facts, when not redacted, and the trace's
``input_provenance`` and ``not_fired``), like :mod:`neurocds.audit.render`, which shows them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from neurocds.explain.render import fact_name, value_words


def _leaves(node: Any, pointer: str) -> Iterator[tuple[str, Any]]:
    """(pointer, value) of each fact: list items that are objects count as one fact each."""
    if isinstance(node, Mapping) and (pointer == "" or not pointer.rsplit("/", 1)[-1].isdigit()):
        for key, value in node.items():
            yield from _leaves(value, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}")
    else:
        yield pointer, node


@lru_cache(maxsize=1)
def _schema() -> Mapping[str, Any]:
    from neurocds.resources import load_schema

    return load_schema("facts.schema.json")


def _label(pointer: str) -> str | None:
    """The base facts schema's title (or description) of the member at ``pointer``, as the terminal names it."""
    node: Any = _schema()
    for part in pointer.strip("/").split("/"):
        if not isinstance(node, Mapping):
            return None
        if part.isdigit() and isinstance(node.get("items"), Mapping):
            node = node["items"]
            continue
        node = (node.get("properties") or {}).get(part.replace("~1", "/").replace("~0", "~"))
    if not isinstance(node, Mapping):
        return None
    label = node.get("title") or node.get("description")
    return label if isinstance(label, str) else None


def name_of(pointer: str) -> str:
    return fact_name(pointer, _label(pointer))


def _sources(provenance: Any, pointer: str) -> list[str]:
    out: list[str] = []
    for source in provenance.get(pointer) or () if isinstance(provenance, Mapping) else ():
        if not isinstance(source, Mapping):
            continue
        what = str(source.get("resource") or "")
        code = source.get("code")
        if isinstance(code, Mapping):
            code = code.get("code")
        text = what + (f" (code {code})" if code else "")
        if text and text not in out:
            out.append(text)
    return out


def input_facts(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per input fact: ``pointer``, readable ``name``, ``value`` in words, ``sources``
    (the FHIR resources it came from). Empty when the facts were redacted."""
    facts = body.get("facts")
    if not isinstance(facts, Mapping):
        return []
    trace = body.get("trace")
    recorded = trace.get("input_provenance") if isinstance(trace, Mapping) else None
    provenance = recorded.get("provenance") if isinstance(recorded, Mapping) else None
    rows = []
    for pointer, value in _leaves(facts, ""):
        if pointer in ("/facts_version",):
            continue
        rows.append(
            {
                "pointer": pointer,
                "name": name_of(pointer),
                "value": value_words(value),
                "sources": _sources(provenance, pointer),
            }
        )
    return rows


def why_not(item: Mapping[str, Any]) -> str:
    """Why a rule did not fire, in words: the conditions that were false, or the facts not recorded."""
    parts = []
    for condition in item.get("false_conditions") or ():
        if isinstance(condition, Mapping):
            pointer = condition.get("pointer")
            test = condition.get("test") or condition.get("derived") or condition.get("finding")
            test = test or (name_of(str(pointer)) if pointer else "a condition")
            found = f" (it was {value_words(condition['value'])})" if "value" in condition else ""
            parts.append(f"{test} does not hold{found}")
        else:
            parts.append(str(condition))
    unknown = [name_of(str(p)) for p in item.get("unknown_facts") or ()]
    if unknown:
        parts.append("not recorded: " + ", ".join(unknown))
    if not parts:
        return "undecided" if item.get("state") == "unknown" else "its conditions did not hold"
    return "; ".join(parts)
