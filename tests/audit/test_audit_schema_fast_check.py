"""The compiled audit-schema check says "valid" exactly when jsonschema does, on real and broken records.

Every append checks its records against schemas/audit-record.schema.json through the
compiled check (neurocds.facts.fastschema); jsonschema only explains a failure. So the
two must agree on every record a log can hold, and on every way one can be wrong.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import make_facts, make_result, read_lines

from neurocds import Engine
from neurocds.audit import AuditLog
from neurocds.audit.records import _compiled, _is_valid, _validator, schema_errors
from neurocds.audit.signing import generate_keypair
from neurocds.errors import FactsValidationError
from neurocds_packs import BUILTIN_PACKS

EXAMPLES = Path(__file__).parents[2] / "examples"
WRONG_VALUES: tuple[Any, ...] = (None, True, 0, 7.5, "", "x", [], [1], {}, {"k": 1})


def _records(tmp_path: Path) -> list[dict[str, Any]]:
    """One log holding every record type: real decisions (plain, redacted, incomplete), a rejection,
    cards, feedback, a signed checkpoint and a recovery."""
    key = tmp_path / "keys" / "signing.pem"
    key.parent.mkdir()
    generate_keypair(key, tmp_path / "keys" / "signing.pub")
    engine = Engine(packs=BUILTIN_PACKS)
    log = AuditLog(tmp_path / "log", signing_key_path=key)
    redacted = AuditLog(tmp_path / "redacted", redact=True, pseudonym_key=b"k" * 32)
    for example in sorted(EXAMPLES.glob("*.json")):
        facts = json.loads(example.read_text(encoding="utf-8"))
        result = engine.evaluate(facts)
        log.record_decision(result, facts)
        redacted.record_decision(result, facts)
    log.record_decision(make_result(complete=False), make_facts())
    try:
        engine.evaluate({"facts_version": "1", "patient": {"id": "p"}, "strength": {"left_leg": "four"}})
    except FactsValidationError as exc:
        log.record_rejection(exc, engine=engine.engine_info(), packs=engine.pack_infos())
        redacted.record_rejection(exc, engine=engine.engine_info(), packs=engine.pack_infos())
    log.append_together([log.prepare_cards("d", ["c1", "c2"]), log.prepare_cards("e", ["c3"])])
    log.record_feedback("c1", "overridden", override_reason={"code": "x", "system": "s"}, decision_id="d")
    log.checkpoint()
    with open(tmp_path / "log" / "audit.jsonl", "ab") as fh:
        fh.write(b'{"torn')  # the next append records a recovery
    log.record_feedback("c2", "accepted")
    records = read_lines(tmp_path / "log") + read_lines(tmp_path / "redacted")
    assert {r["type"] for r in records} == {"decision", "rejection", "cards", "feedback", "checkpoint", "recovery"}
    return records


def _mutations(value: Any, depth: int = 0) -> Iterator[Any]:
    """Copies of ``value`` each broken (or not) in one place: a member removed, added or replaced."""
    if isinstance(value, dict):
        for key in value:
            removed = {k: v for k, v in value.items() if k != key}
            yield removed
            for wrong in WRONG_VALUES if depth < 3 else WRONG_VALUES[:3]:
                yield {**value, key: wrong}
            for inner in _mutations(value[key], depth + 1):
                yield {**value, key: inner}
        yield {**value, "unexpected_member": 1}
    elif isinstance(value, list) and value:
        yield value[1:]
        yield [*value, value[0]]
        for inner in _mutations(value[0], depth + 1):
            yield [inner, *value[1:]]


@pytest.mark.parametrize("check", [_is_valid, _compiled], ids=["jsonschema-rs first", "compiled"])
def test_the_fast_checks_agree_with_jsonschema_on_every_record_and_its_mutations(tmp_path: Path, check: Any) -> None:
    fast, reference = check(), _validator()
    checked = invalid = 0
    for record in _records(tmp_path):
        assert fast(record) and reference.is_valid(record), record["type"]
        for mutated in _mutations(copy.deepcopy(record)):
            answer = reference.is_valid(mutated)
            assert fast(mutated) == answer, (record["type"], json.dumps(mutated)[:300])
            checked += 1
            invalid += not answer
    assert checked > 5_000 and invalid > 2_000  # the mutations do break records, and often


def test_schema_errors_still_explains_with_pointers(tmp_path: Path) -> None:
    record = next(r for r in _records(tmp_path) if r["type"] == "cards")
    broken = {**record, "cards": {**record["cards"], "card_uuids": "not a list"}}
    assert schema_errors(record) == []
    assert schema_errors(broken) and schema_errors(broken)[0].startswith("/cards/card_uuids: ")
