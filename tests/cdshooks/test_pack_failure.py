"""A pack that fails while evaluating must never look like "no advice"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from neurocds import Engine
from neurocds_packs import BUILTIN_PACKS

from .spec import assert_response
from .support import BoomPack, Server, hook_request, running_server, synthea_prefetch

PATH = "/cds-services/neurocds-patient-view"


@pytest.fixture(scope="module")
def boom_server() -> Iterator[Server]:
    engine = Engine(packs=[*BUILTIN_PACKS, "cds-test"], plugins=[("boom", BoomPack())])
    with running_server({"insecure_dev": True}, engine) as srv:
        yield srv


def _incomplete(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in cards if c["source"]["topic"]["code"] == "incomplete"]


def test_failing_pack_gives_a_warning_card(boom_server: Server) -> None:
    patient_id, prefetch = synthea_prefetch()
    resp = boom_server.call("POST", PATH, hook_request("patient-view", patient_id, prefetch))
    assert resp.status == 200
    cards = assert_response(resp.json())
    [warning] = _incomplete(cards)
    assert warning["indicator"] == "warning"
    assert "incomplete" in warning["summary"].lower()
    assert "cds\\-test" in warning["detail"]  # names the pack (Markdown-escaped)
    assert "boom" not in warning["detail"]  # but not the exception text


def test_failing_pack_with_nothing_else_to_say_is_not_empty(boom_server: Server) -> None:
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1"}}
    resp = boom_server.call("POST", PATH, hook_request("patient-view", "p1", prefetch))
    assert resp.status == 200
    cards = assert_response(resp.json())
    assert _incomplete(cards), "a failed pack must be reported even when nothing fired"
