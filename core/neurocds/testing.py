"""Tools for pack authors' tests: build a pack from inline rules.

Case files (``*.case.yaml``) are checked by the neurocds pytest plugin and
:mod:`neurocds.authoring.cases`; see docs/pack-authoring.md.

from neurocds.testing import inline_pack
plugin = inline_pack(tmp_path, "my-pack", "my", rules=[{...}], depends_on=["weakness-pattern"])
engine = Engine(plugins=[("my-pack", plugin)], packs=["weakness-pattern", "my-pack"])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from neurocds.hookspecs import ComputedFacts, RulePack, hookimpl


def inline_pack(
    directory: Path,
    name: str,
    namespace: str,
    rules: Sequence[Mapping[str, Any]],
    *,
    version: str = "0.0.1",
    depends_on: Sequence[str] = (),
    facts_schema: Mapping[str, Any] | None = None,
    compute: Callable[[Mapping[str, Any]], ComputedFacts | None] | None = None,
    finding_detail: Callable[..., str | None] | None = None,
    detailed_findings: Sequence[str] | None = None,
) -> Any:
    """Write ``rules`` to a rule file under ``directory`` and return a plugin object for it.

    ``detailed_findings``: the record's ``RulePack.detailed_findings`` (the findings
    ``finding_detail`` is called for; ``None``: all of the pack's)."""
    folder = Path(directory) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.json"
    path.write_text(
        json.dumps({"format": "neurocds-ruleset/1", "pack": name, "namespace": namespace, "rules": list(rules)}),
        encoding="utf-8",
    )
    record = RulePack(
        name=name,
        version=version,
        rule_files=[path],
        depends_on=tuple(depends_on),
        facts_schema=facts_schema,
        description=f"inline test pack {name}",
        detailed_findings=detailed_findings,
    )
    plugin = SimpleNamespace(neurocds_register_packs=hookimpl(lambda: [record]))
    if compute is not None:
        plugin.neurocds_compute_facts = hookimpl(lambda facts: compute(facts))
    if finding_detail is not None:

        def detail(finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]) -> str | None:
            return finding_detail(finding_id, rule_id, facts, derived)

        plugin.neurocds_finding_detail = hookimpl(detail)
    return plugin


def rule(
    rule_id: str,
    when: Mapping[str, Any],
    *,
    finding: str | None = None,
    derive: str | None = None,
    value: Any = True,
    urgency: str = "urgent",
) -> dict[str, Any]:
    """A minimal valid rule dict (title, rationale, evidence filled in) for tests."""
    body: dict[str, Any] = {
        "id": rule_id,
        "title": f"test rule {rule_id}",
        "when": dict(when),
        "rationale": "test rationale",
        "evidence": [{"source": "test", "citation": "test citation"}],
    }
    if derive is not None:
        body["derive"] = {"name": derive, "value": value}
    else:
        body.update(finding=finding or rule_id, urgency=urgency, detail="test detail", recommendations=["test step"])
    return body
