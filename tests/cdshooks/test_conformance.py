"""Every shared patient through every hook: responses conform to the letter (issue 15, items 2 and 5).

Each Synthea, synthea-py and carebundle record is answered as a FHIR server
answers our templates and sent to patient-view, order-select and order-sign; each
response must pass the spec checks, including the walk for null, "", [] and {}
(optional fields without a value are omitted), and no card text may carry rule
syntax.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import shared_data

from .spec import assert_response
from .support import Keys, Server, hook_request, synthea_prefetch

FOLDERS = ("synthea", "synthea-py", "carebundle")
RECORDS = sorted(
    path
    for folder in FOLDERS
    for path in (shared_data.DATA / folder).rglob("*.json")
)
HOOKS = {"patient-view": "neurocds-patient-view", "order-select": "neurocds-order-select",
         "order-sign": "neurocds-order-sign"}  # fmt: skip
RULE_SYNTAX = re.compile(r"rule tests?:|[a-z_]+\.[a-z_]+ *(?:<|>|≤|≥|==)")


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: f"{p.parent.name}/{p.stem[:24]}")
def test_every_shared_patient_gets_conformant_responses_on_every_hook(server: Server, keys: Keys, path: Path) -> None:
    try:
        patient_id, prefetch = synthea_prefetch(path.name, path.parent)
    except (StopIteration, KeyError):
        pytest.skip("not a patient record (no Patient resource)")
    for hook, service in HOOKS.items():
        url = f"/cds-services/{service}"
        body = hook_request(hook, patient_id, prefetch)
        if hook == "order-sign":
            body["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection", "entry": []}
        resp = server.call("POST", url, body, token=keys.token(server.base_url + url))
        assert resp.status == 200, (hook, resp.body[:300])
        for card in assert_response(resp.json()):
            assert not RULE_SYNTAX.search(card["detail"]), card["detail"]
