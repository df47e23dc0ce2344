"""Prefetch templates: generated from the mapping tables, within the spec's query restrictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import shared_data

from neurocds.cdshooks.config import DEFAULT_MAX_BODY_BYTES
from neurocds.cdshooks.discovery import prefetch_templates
from neurocds.fhir import default_mapping_paths, load_mapping_tables
from neurocds.fhir.rules import FAMILY_OBSERVATION, FAMILY_PROCEDURE

from .spec import assert_response
from .support import Keys, Server, hook_request, service_templates, synthea_prefetch

# CDS Hooks prefetch query restrictions: patient reference, token equality, date
# prefixes, _count and _sort; nothing else.
ALLOWED_PARAMETERS = {"patient", "code", "date", "_count", "_sort"}
SYNTHEA_PY = shared_data.DATA / "synthea-py"


def _query(template: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in template.partition("?")[2].split("&") if part)


def _codes(value: str) -> set[tuple[str, str]]:
    return {tuple(unquote(v).split("|", 1)) for v in value.split(",")}  # type: ignore[misc]


def test_templates_stay_within_the_prefetch_query_restrictions() -> None:
    for key, template in service_templates().items():
        assert template.count("{{") == 1 and "{{context.patientId}}" in template, key
        assert set(_query(template)) <= ALLOWED_PARAMETERS, key
        assert ":" not in "".join(_query(template)), f"{key}: no search modifiers"


def test_observation_and_procedure_codes_are_those_of_the_tables() -> None:
    tables = load_mapping_tables(default_mapping_paths())
    templates = prefetch_templates(tables)
    observations = _query(templates["observations"])
    assert _codes(observations["code"]) == set(tables.index(FAMILY_OBSERVATION)._exact)
    assert ("http://loinc.org", "2823-3") in _codes(observations["code"])  # potassium, from labs-loinc.yaml
    assert observations["_sort"] == "-date"
    assert _codes(_query(templates["procedures"])["code"]) == set(tables.index(FAMILY_PROCEDURE)._exact)
    # ICD-10 Conditions are matched by prefix, which token equality cannot express.
    assert "code" not in _query(templates["conditions"])


def test_a_prefix_rule_leaves_its_family_unnarrowed(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        json.dumps(
            {
                "format": "neurocds-fhir-mapping/1",
                "table": "test-prefix-labs",
                "findings": [
                    {
                        "id": "prefix-finding",
                        "fact": "symptoms.palpitations",
                        "codes": [{"system": "urn:test", "code": "X1", "match": "prefix"}],
                        "value_boolean": {"when_true": True, "when_false": False},
                    }
                ],
            }
        )
    )
    templates = prefetch_templates(load_mapping_tables([*default_mapping_paths(), extra]))
    assert "code" not in _query(templates["observations"])


@pytest.fixture(scope="module")
def synthea_py_bodies() -> list[tuple[str, bytes]]:
    bodies = []
    for path in sorted(SYNTHEA_PY.glob("*.json")):
        pid, prefetch = synthea_prefetch(path.name, SYNTHEA_PY)
        bodies.append((path.name, json.dumps(hook_request("patient-view", pid, prefetch)).encode()))
    assert len(bodies) == 8
    return bodies


def test_every_synthea_py_patient_fits_the_default_body_limit(
    synthea_py_bodies: list[tuple[str, bytes]], server: Server, keys: Keys
) -> None:
    """Whole records of 0.9-5.5 MB; asked for through the templates they fit in 1 MiB."""
    path = "/cds-services/neurocds-patient-view"
    for name, body in synthea_py_bodies:
        assert len(body) <= DEFAULT_MAX_BODY_BYTES, (name, len(body))
        token = keys.token(server.base_url + path)
        resp = server.call("POST", path, None, raw=body, token=token, headers={"Content-Type": "application/json"})
        assert resp.status == 200, (name, resp.body[:300])
        cards: list[dict[str, Any]] = assert_response(resp.json())
        assert cards, name
