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
