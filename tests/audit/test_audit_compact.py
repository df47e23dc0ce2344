"""Compact decision records: the explanation's static parts live once in the catalog, records stay
small, verifiable and render the full why/why-not from the log directory alone."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import PATIENT_ID, SECRET_VALUE, make_facts, make_result, read_lines

from neurocds import Engine
from neurocds.audit import AuditLog, read_records, render_text, verify_log
from neurocds.audit._canon import canonical_json
from neurocds.audit.catalog import CATALOG_NAME
from neurocds.audit.chain import LOG_NAME
from neurocds_packs import BUILTIN_PACKS

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))


@pytest.fixture(scope="module")
def example_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    d = tmp_path_factory.mktemp("compact") / "log"
    engine = Engine(packs=BUILTIN_PACKS)
    log = AuditLog(d)
    results = []
    for _ in range(3):  # the same decisions again: their static parts are already catalogued
        for path in EXAMPLES:
            facts = json.loads(path.read_text(encoding="utf-8"))
            result = engine.evaluate(facts).to_dict()
            log.record_decision(result, facts)
            results.append(result)
    return d, results


def test_every_example_comes_back_exactly_as_the_engine_gave_it(example_log: Any) -> None:
    d, results = example_log
    records = read_records(d)
    assert len(records) == len(results)
    for record, result in zip(records, results, strict=True):
        body = record["decision"]
        assert "explanation" not in body
        for key in ("findings", "derived", "missing_data", "trace"):
            assert canonical_json(body[key]) == canonical_json(result[key]), key


def test_records_are_small_and_the_catalog_does_not_grow_with_repeats(example_log: Any) -> None:
    d, _ = example_log
    sizes = [len(line) for line in (d / LOG_NAME).read_bytes().splitlines()]
    # Was ~42 KB with the explanation stored whole; issue 14's goal is 4 KB. With the 2.0.0 packs
    # these examples' median was ~4.1 KB until whole categorical trace nodes went to the catalog.
    assert statistics.median(sizes) <= 4 * 1024, sizes
    stored = read_lines(d)
    assert all("explanation" in r["decision"] and "trace" not in r["decision"] for r in stored)
    catalog_lines = (d / CATALOG_NAME).read_bytes().count(b"\n")
    first_round = {r["decision"]["explanation"]["catalog"][0] for r in stored[len(EXAMPLES) - 1 : len(EXAMPLES)]}
    assert first_round == {catalog_lines}  # the repeats added no entry
    assert verify_log(d).ok


def test_the_explanation_renders_without_any_pack_installed(example_log: Any, monkeypatch: Any) -> None:
    d, results = example_log
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: [])  # every pack uninstalled
    record = read_records(d)[0]
    text = render_text(record)
    first = results[0]["findings"][0]
    assert first["title"] in text


def _logged(tmp_path: Path) -> Path:
    d = tmp_path / "log"
    log = AuditLog(d)
    for _ in range(3):
        log.record_decision(make_result(), make_facts())
    return d


def test_an_edited_catalog_entry_is_found_by_verify(tmp_path: Path) -> None:
    d = _logged(tmp_path)
    path = d / CATALOG_NAME
    path.write_bytes(path.read_bytes().replace(b"Possible cauda equina", b"Possible cauda EQUINA", 1))
    report = verify_log(d)
    assert not report.ok and report.first_bad_sequence == 1
    [problem] = [p for p in report.problems if p.code == "catalog"]
    assert "3 decision record(s)" in problem.reason and "was changed" in problem.reason
    # Readers still list the records, as stored, instead of showing a changed text.
    assert "explanation" in read_records(d)[0]["decision"]


def test_a_removed_catalog_is_found_by_verify(tmp_path: Path) -> None:
    d = _logged(tmp_path)
    (d / CATALOG_NAME).unlink()
    report = verify_log(d)
    assert report.first_bad_sequence == 1 and any(p.code == "catalog" for p in report.problems)


def test_a_redacted_log_keeps_no_value_in_its_catalog(tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d, redact=True, pseudonym_key=b"k" * 32).record_decision(make_result(), make_facts())
    for name in (LOG_NAME, CATALOG_NAME):
        raw = (d / name).read_bytes()
        assert PATIENT_ID.encode() not in raw and str(SECRET_VALUE).encode() not in raw, name
    assert verify_log(d).ok


def test_an_explanation_not_of_the_documented_shape_is_stored_whole(tmp_path: Path) -> None:
    d = tmp_path / "log"
    result = make_result()
    result["trace"]["fired"] = ["not a node"]
    AuditLog(d).record_decision(result, make_facts())
    [stored] = read_lines(d)
    assert stored["decision"]["trace"]["fired"] == ["not a node"] and "explanation" not in stored["decision"]
    assert verify_log(d).ok


def test_whole_trace_nodes_go_to_the_catalog_only_when_their_values_are_categorical() -> None:
    """A rule false because a side was "left" recurs whole: one catalog entry, and the record keeps
    its number. A rule false for a lab value would make an entry per value: it stays inline."""
    from neurocds.audit.compact import compact, expand

    entries: list[dict[str, Any]] = []

    def intern(entry: dict[str, Any]) -> int:
        if entry not in entries:
            entries.append(entry)
        return entries.index(entry)

    def body(value: Any) -> dict[str, Any]:
        because = [{"pointer": "/a", "test": "== 'x'", "value": value}]
        return {"trace": {"fired": [], "not_fired": [{"rule": "r", "false_conditions": because}]}}

    memo: dict[Any, Any] = {}
    for value in (1.5, 2.5, 3.5, 4.5):
        packed = compact(body(value), intern, lambda: [len(entries), "0" * 64], memo)
        assert isinstance(packed["explanation"]["trace"]["not_fired"][0], list)
        assert expand(packed, entries.__getitem__) == body(value)
        old_form = {"trace": packed["explanation"]["trace"], "form": "catalog-1"}  # logs written before
        assert expand({"explanation": {**packed["explanation"], **old_form}}, entries.__getitem__) == body(value)
    grown = len(entries)
    assert grown == 2  # the rule's and the condition's static parts, whatever the value
    for value in ("left", "right", "left"):
        packed = compact(body(value), intern, lambda: [len(entries), "0" * 64], memo)
        assert isinstance(packed["explanation"]["trace"]["not_fired"][0], int)
        assert packed["explanation"]["form"] == "catalog-2"
        assert expand(packed, entries.__getitem__) == body(value)
    assert len(entries) == grown + 2  # one whole node per distinct value, once


def _definition_sha256(obj: Any) -> str:
    import hashlib

    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_the_spliced_explanation_hash_is_the_definitions_hash_on_awkward_values() -> None:
    """The memoised path hashes the nodes' remembered canonical bytes spliced together, not the
    whole explanation encoded again: on floats orjson writes otherwise, null, non-ASCII text and
    a node seen before in a different key order, the hash must still be the definition's."""
    from neurocds.audit.catalog import Catalog
    from neurocds.audit.compact import compact, expand

    def because(value: Any) -> dict[str, Any]:
        return {"pointer": "/labs/x", "op": "<", "threshold": 1e-05, "value": value}

    def body(value: Any, order: bool) -> dict[str, Any]:
        node = {"rule": "r", "pack": "p", "because": [because(value)]}
        if order:
            node = dict(reversed(list(node.items())))
        return {
            "decision_id": "d",
            "findings": [],
            "derived": [{"name": "n", "pack": "p", "rule": "r", "value": value, "because": [because(value)]}],
            "missing_data": [],
            "packs": [{"name": "p", "version": "1"}],
            "trace": {"zeta": "é", "fired": [node], "not_fired": [], "alpha": [6.7e-06, None]},
        }

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(Path(tmp))
        memo: dict[Any, Any] = {}
        for value in (0.00001, 6.7e-06, None, "ü", 0.00001, 1e16, -2**70, None):
            for order in (False, True):
                whole = body(value, order)
                packed = compact(whole, cat.intern, cat.position, memo)
                explained = {k: whole[k] for k in ("findings", "derived", "missing_data", "trace", "packs")}
                assert packed["explanation"]["sha256"] == _definition_sha256(explained)
                unmemoised = compact(whole, cat.intern, cat.position)
                assert packed["explanation"]["sha256"] == unmemoised["explanation"]["sha256"]
                expand(packed, cat.lookup)  # raises when the rebuilt explanation does not match the hash
        with pytest.raises(Exception, match="canonical JSON"):
            compact(body(float("nan"), False), cat.intern, cat.position, memo)  # null's memo entry must not hide it
