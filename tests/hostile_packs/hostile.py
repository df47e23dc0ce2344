"""Hostile packs, one per way a third-party pack can misbehave, and the harness that runs them.

Run as a script (``python -m tests.hostile_packs.hostile KIND BACKEND``) it evaluates the
emergency example with and without the hostile pack and prints both results as JSON,
so tests can run the kinds that hang or exit the interpreter in a subprocess.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from neurocds import Engine
from neurocds.hookspecs import ComputedFacts, RulePack, hookimpl
from neurocds.testing import inline_pack, rule

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hypokalaemia.json"
EMERGENCY = "neuromuscular.electrolyte_imbalance"
PACK = "hostile"
BUDGET_S = 0.2
ALWAYS = {"fact": "strength.left_leg", "lte": 5}


def emergency_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    doc["labs"]["potassium_mmol_l"] = 2.0
    return doc


def _mutate(facts: Any, value: float = 4.5) -> None:
    facts["labs"]["potassium_mmol_l"] = value


def _sleep(*_: Any) -> None:
    time.sleep(10)


def _raise(exc: BaseException) -> Callable[..., Any]:
    def hook(*_: Any) -> Any:
        raise exc

    return hook


def _spoof(_: Any) -> ComputedFacts:
    return ComputedFacts(pack=PACK, values={"pattern.umn_signs": True})


def _mutate_compute(facts: Any) -> None:
    _mutate(facts)


def _detail(action: Callable[[Any], Any]) -> Callable[..., Any]:
    def hook(finding_id: str, rule_id: str, facts: Any, derived: Any) -> Any:
        return action(facts)

    return hook


COMPUTE: dict[str, Callable[[Any], Any]] = {
    "spoof-namespace": _spoof,
    "claim-other-pack": lambda _: ComputedFacts(pack="weakness-pattern", values={"pattern.umn_signs": True}),
    "mutate-in-compute": _mutate_compute,
    "nan-computed": lambda _: ComputedFacts(pack=PACK, values={"hostile.score": math.nan}),
    "list-computed": lambda _: ComputedFacts(pack=PACK, values={"hostile.score": [1, 2]}),
    "raise-in-compute": _raise(RuntimeError("boom")),
    "slow-compute": _sleep,
    "exit-in-compute": _raise(SystemExit(3)),
    "interrupt-in-compute": _raise(KeyboardInterrupt()),
}
DETAIL: dict[str, Callable[[Any], Any]] = {
    "mutate-in-detail": _mutate,
    "nan-in-detail": lambda facts: _mutate(facts, math.nan),
    "huge-detail": lambda _: "x" * 10_000_000,
    "number-detail": lambda _: 42,
    "surrogate-detail": lambda _: "bad \ud800 text",
    "slow-detail": _sleep,
    "exit-in-detail": _raise(SystemExit(0)),
    "interrupt-in-detail": _raise(KeyboardInterrupt()),
}
REGISTER: dict[str, Callable[[], Any]] = {
    "raise-in-register": _raise(RuntimeError("cannot register")),
    "five-from-register": lambda: 5,
    "dict-from-register": lambda: {"name": PACK},
    "exit-in-register": _raise(SystemExit(1)),
    "slow-register": lambda: time.sleep(30),
}
# Rule files that must not load: the pack fails at load, the others run.
BAD_RULES: dict[str, list[dict[str, Any]]] = {
    "rule-cycle": [
        rule("hostile.a", {"derived": "hostile.b"}, derive="hostile.a"),
        rule("hostile.b", {"derived": "hostile.a"}, derive="hostile.b"),
    ],
    "typo-derived": [rule("hostile.t", {"derived": "pattern.umn_sign"})],
    "typo-finding": [rule("hostile.t", {"finding": "spinal.cord_compresion_suspected"})],
    "threshold-out-of-range": [rule("hostile.t", {"fact": "strength.left_leg", "lte": 9})],
}
REGEX_SCHEMA = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
KINDS = [*COMPUTE, *DETAIL, *REGISTER, *BAD_RULES, "catastrophic-regex", "dependency-cycle"]
# Kinds that could hang or end the interpreter: tests run these in a subprocess.
DANGEROUS = {k for k in KINDS if k.startswith(("slow-", "exit-", "interrupt-"))}


def hostile_plugins(kind: str, directory: Path) -> list[tuple[str, Any]]:
    """The plugin(s) of one hostile kind; every hostile pack has a rule that fires on the example."""
    rules = BAD_RULES.get(kind, [rule("hostile.fires", ALWAYS, urgency="routine")])
    schema = REGEX_SCHEMA if kind == "catastrophic-regex" else None
    plugin = inline_pack(
        directory,
        PACK,
        PACK,
        rules,
        depends_on=["weakness-pattern"] if kind.startswith("typo") else (),
        facts_schema=schema,
        compute=COMPUTE.get(kind),
        finding_detail=(lambda *a: DETAIL[kind](a[2])) if kind in DETAIL else None,
    )
    if kind in REGISTER:
        plugin.neurocds_register_packs = hookimpl(REGISTER[kind])
    if kind == "dependency-cycle":
        other = inline_pack(directory, "hostile-b", "hostileb", [rule("hostileb.x", ALWAYS)], depends_on=[PACK])
        plugin.neurocds_register_packs = hookimpl(
            lambda: [RulePack(PACK, "0.0.1", [directory / PACK / "rules.json"], depends_on=["hostile-b"])]
        )
        return [(PACK, plugin), ("hostile-b", other)]
    return [(PACK, plugin)]


def comparable(result: Mapping[str, Any], leave_out: str = PACK) -> dict[str, Any]:
    """What must not change when a hostile pack is added: everything not of that pack."""
    mine = (leave_out + ".", leave_out.replace("-", "") + ".")
    return {
        "findings": [
            {k: f[k] for k in ("id", "urgency", "title", "detail", "recommendations", "rule")}
            for f in result["findings"]
            if not f["id"].startswith(mine)
        ],
        "derived": [d for d in result["derived"] if not d["name"].startswith(mine)],
        "facts_sha256": result["facts_sha256"],
    }


def evaluate(kind: str | None, backend: str | None, directory: Path) -> dict[str, Any]:
    """One evaluation of the emergency example, with the hostile pack of ``kind`` (or none)."""
    plugins = hostile_plugins(kind, directory) if kind else []
    engine = Engine(plugins=plugins, backend=backend, on_pack_error="skip", hook_budget=BUDGET_S, load_budget=1.0)  # unpinned: a run vs the same run without it
    doc = emergency_doc()
    sent = copy.deepcopy(doc)
    started = time.monotonic()
    result = engine.evaluate(doc).to_dict()
    return {
        "result": result,
        "seconds": time.monotonic() - started,
        "caller_dict_unchanged": doc == sent,
    }


def main() -> None:
    kind, backend = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        out = {
            "hostile": evaluate(kind, backend, Path(tmp) / "h"),
            "baseline": evaluate(None, backend, Path(tmp) / "b"),
        }
    print(json.dumps(out))
    sys.stdout.flush()


def slow_and_failing_plugins(directory: Path) -> list[tuple[str, Any]]:
    """Two packs that fail on every evaluation: one never returns, one's hooks raise.

    Their answers are deterministic (the same error every time), so tests that compare
    results across threads or backends can run with them installed.
    """
    slow = inline_pack(
        directory, "slow-pack", "slow", [rule("slow.f", ALWAYS, urgency="info")], compute=lambda _: time.sleep(3600)
    )
    failing = inline_pack(
        directory,
        "failing-pack",
        "failing",
        [rule("failing.f", ALWAYS, urgency="info")],
        finding_detail=_raise(RuntimeError("detail failed")),
    )
    return [("slow-pack", slow), ("failing-pack", failing)]


if __name__ == "__main__":
    main()
