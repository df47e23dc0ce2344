"""Meta-tests: every hook is documented for pack authors and every hook has a test."""

from __future__ import annotations

import inspect
from pathlib import Path

from neurocds import hookspecs

TESTS = Path(__file__).parent


def spec_functions():
    return {name: getattr(hookspecs, name) for name in dir(hookspecs) if name.startswith("neurocds_")}


def test_hook_names_share_the_prefix_and_are_listed():
    assert set(spec_functions()) == set(hookspecs.HOOK_NAMES)


def test_every_hook_is_documented():
    for name, func in spec_functions().items():
        doc = inspect.getdoc(func) or ""
        assert "Called" in doc, f"{name}: say when it is called"
        assert "Example::" in doc, f"{name}: give an example"
        params = [p for p in inspect.signature(func).parameters]
        for param in params:
            assert f":param {param}:" in doc, f"{name}: document :param {param}:"
        assert ":returns:" in doc, f"{name}: document the return value"
        assert inspect.signature(func).return_annotation is not inspect.Signature.empty


def test_every_hook_has_a_test():
    sources = "\n".join(
        p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py") if p.name != Path(__file__).name
    )
    used = {
        "neurocds_register_packs": "inline_pack(",  # every inline pack registers through the hook
        "neurocds_compute_facts": "compute=",
        "neurocds_finding_detail": "finding_detail=",
        "neurocds_fhir_mappings": "neurocds_fhir_mappings",
    }
    assert set(used) == set(hookspecs.HOOK_NAMES)
    for name, marker in used.items():
        assert marker in sources, f"no test exercises {name}"


# The hook limits have one source of truth, the constants in neurocds.rules.hooks; every text
# that quotes them must say what they are.
ROOT = TESTS.parent
LIMIT_TEXTS = {
    "README.md": ROOT / "README.md",
    "rules/hooks.py": ROOT / "core" / "neurocds" / "rules" / "hooks.py",
    "population/settings.py": ROOT / "core" / "neurocds" / "population" / "settings.py",
}


def _sentences(text: str) -> list[str]:
    flat = " ".join(text.replace("#", " ").split())
    return [s for s in flat.replace("; ", ". ").split(". ") if s]


def test_the_quoted_hook_limits_are_the_ones_applied():
    from neurocds import Engine
    from neurocds.rules.hooks import DEFAULT_HOOK_BUDGET_S, LOAD_BUDGET_S, WALL_LIMIT_FACTOR

    budget_ms, factor = round(DEFAULT_HOOK_BUDGET_S * 1000), WALL_LIMIT_FACTOR
    wall, load_wall = DEFAULT_HOOK_BUDGET_S * factor, LOAD_BUDGET_S * factor
    spec = " ".join((hookspecs.__doc__ or "").split())
    assert f"default {budget_ms} ms of CPU time" in spec and f"default {factor:g}, times the budget" in spec
    assert f"wall-clock time: {wall:g} s)" in spec
    assert f"{load_wall:g} s of wall-clock time" in " ".join(inspect.getdoc(hookspecs.neurocds_register_packs).split())
    engine_doc = " ".join((Engine.__doc__ or "").split())
    assert f"{wall:g} s per evaluation for the default ``hook_budget``, {load_wall:g} s at load" in engine_doc
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"`hook_budget`, default {budget_ms} ms" in readme and f"`hook_budget={DEFAULT_HOOK_BUDGET_S:g}`" in readme
    assert f"(default {factor:g}) times the budget stops it: {wall:g} s per evaluation by default" in readme
    assert f"{LOAD_BUDGET_S:g} s of CPU, {load_wall:g} s of wall-clock time" in readme


def test_no_text_promises_the_hook_budget_keeps_an_answer_within_500_ms():
    """A pack that blocks is stopped only at the wall limit (1 s by default, per pack): the CPU budget
    alone does not keep a CDS Hooks answer within 500 ms, and no comment or section may say it does."""
    from neurocds.rules.hooks import DEFAULT_HOOK_BUDGET_S, WALL_LIMIT_FACTOR

    assert DEFAULT_HOOK_BUDGET_S * WALL_LIMIT_FACTOR >= 0.5  # else such a promise could hold
    texts = {name: path.read_text(encoding="utf-8") for name, path in LIMIT_TEXTS.items()}
    texts["hookspecs"] = hookspecs.__doc__ or ""
    for name, text in texts.items():
        for sentence in _sentences(text):
            about_budget = any(w in sentence for w in ("budget", "0.2 s", "200 ms", "DEFAULT_HOOK_BUDGET_S"))
            denied = " not " in f" {sentence.lower()} "
            promise = any(f"{w} " in sentence for w in ("under", "inside", "within")) and not denied
            assert not (about_budget and "500 ms" in sentence and promise), f"{name}: {sentence}"
