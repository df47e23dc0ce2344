"""Registering a plugin runs no pack code on the caller's thread.

pluggy reads a plugin by walking it: ``dir()``, each attribute, the signature of each hook
function (following ``__wrapped__``), and ``==`` against the plugins already registered.
On a pack's own object each of those can be pack code. They run on the budgeted worker,
so a plugin that hangs or raises there is named as failed while the other packs load
and answer.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from neurocds import Engine, PackLoadError
from neurocds.hookspecs import ComputedFacts, hookimpl
from neurocds.rules.packs import VettedPlugin
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

from .hostile import ALWAYS, EMERGENCY, emergency_doc

LOAD_BUDGET_S = 0.2  # wall-clock limit 1 s; a hostile plugin below stalls for 20 s
STALL_S = 20.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of a test, so that a stalled worker thread finishes."""
    event = threading.Event()
    yield event
    event.set()


def _spin(event: threading.Event) -> None:
    started = time.monotonic()
    while not event.is_set() and time.monotonic() - started < STALL_S:
        pass


def hostile_plugin(kind: str, tmp_path: Path, release: threading.Event) -> Any:
    """A working pack (one rule that fires on the example) whose object misbehaves when read."""
    record = inline_pack(tmp_path, "reg", "reg", [rule("reg.fires", ALWAYS, urgency="info")]).neurocds_register_packs
    stall: Callable[[], None] = (
        (lambda: _spin(release)) if kind.endswith("spins") else (lambda: release.wait(STALL_S) and None)
    )

    class Hostile:
        neurocds_register_packs = staticmethod(record)

        def __dir__(self) -> list[str]:
            if kind == "dir-raises":
                raise RuntimeError("no listing today")
            if kind.startswith("dir-"):
                stall()
            return list(object.__dir__(self))

        def __eq__(self, other: object) -> bool:
            if kind == "eq-stalls":
                stall()
            return self is other

        __hash__ = object.__hash__

    if kind == "wrapped-stalls":

        class Trap:
            def __getattr__(self, name: str) -> Any:
                stall()
                raise AttributeError(name)

        def compute(facts: Any) -> ComputedFacts | None:
            return None

        compute.__wrapped__ = Trap()  # type: ignore[attr-defined]  # the attack: signature lookup follows it
        Hostile.neurocds_compute_facts = staticmethod(hookimpl(compute))  # type: ignore[attr-defined]
    if kind == "option-stalls":

        class Option:
            def __bool__(self) -> bool:  # pluggy tests ``tryfirst`` when it orders the hooks
                stall()
                return False

        Hostile.neurocds_compute_facts = staticmethod(hookimpl(tryfirst=Option())(lambda facts: None))  # type: ignore[attr-defined, call-overload]
    return Hostile()


def load(plugin: Any, **kw: Any) -> tuple[Engine, float]:
    started = time.monotonic()
    engine = Engine(
        packs=[*BUILTIN_PACKS, "reg"],
        plugins=[("reg", plugin)],
        load_budget=LOAD_BUDGET_S,
        on_pack_error="skip",
        **kw,
    )
    return engine, time.monotonic() - started


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("dir-stalls", "registration did not return within the pack's wall-clock limit of 1000 ms"),
        ("dir-spins", "registration ran past the pack's budget of 200 ms of CPU time"),
        ("dir-raises", "registration raised RuntimeError: no listing today"),
        ("wrapped-stalls", "registration did not return within"),
        ("option-stalls", "registration did not return within"),
    ],
)
def test_a_plugin_that_hangs_or_raises_while_read_is_named_and_the_others_answer(
    kind: str, words: str, tmp_path: Path, release: threading.Event
) -> None:
    engine, seconds = load(hostile_plugin(kind, tmp_path, release))
    assert seconds < STALL_S / 2, "registration ran on the caller's thread, without a limit"
    (failed,) = engine.failed_packs
    assert failed.name == "reg" and words in (failed.error or ""), failed.error
    assert engine.pm.get_plugin("reg") is None
    assert [p.name for p in engine.packs] == sorted(BUILTIN_PACKS) or {p.name for p in engine.packs} == set(
        BUILTIN_PACKS
    )
    result = engine.evaluate(emergency_doc())
    assert EMERGENCY in result.finding_ids and not result.complete  # never an empty all-clear
    assert {"pack": "reg", "kind": "pack_load"}.items() <= result.errors[0].items()


def test_asked_for_by_name_a_plugin_that_stalls_while_read_is_an_error(
    tmp_path: Path, release: threading.Event
) -> None:
    started = time.monotonic()
    with pytest.raises(PackLoadError, match="registration did not return"):
        Engine(
            packs=[*BUILTIN_PACKS, "reg"],
            plugins=[("reg", hostile_plugin("dir-stalls", tmp_path, release))],
            load_budget=LOAD_BUDGET_S,
        )
    assert time.monotonic() - started < STALL_S / 2


def test_the_engine_never_compares_a_plugin_object(tmp_path: Path, release: threading.Event) -> None:
    # pluggy refuses an object registered twice by comparing it with every registered
    # plugin; a pack's __eq__ must not run on the caller's thread (here it is never run).
    engine, seconds = load(hostile_plugin("eq-stalls", tmp_path, release))
    assert seconds < STALL_S / 2 and not engine.failed_packs
    assert "reg.fires" in engine.evaluate(emergency_doc()).finding_ids


def test_the_plugin_manager_holds_only_the_vetted_hooks(tmp_path: Path) -> None:
    seen: list[Any] = []

    def detail(finding_id: str, facts: Any) -> str:  # a subset of the spec's arguments, out of order
        seen.append((finding_id, type(facts).__name__))
        return "more"

    plugin = inline_pack(tmp_path, "reg", "reg", [rule("reg.fires", ALWAYS)])
    plugin.neurocds_finding_detail = hookimpl(detail)
    plugin.helper = lambda: None  # not a hook: not reachable through the plugin manager
    engine = Engine(packs=[*BUILTIN_PACKS, "reg"], plugins=[("reg", plugin)])
    registered = engine.pm.get_plugin("reg")
    assert isinstance(registered, VettedPlugin) and not hasattr(registered, "helper")
    assert engine.evaluate(emergency_doc()).finding("reg.fires")["detail"].endswith("more")  # type: ignore[index]
    assert seen == [("reg.fires", "mappingproxy")]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            {"other": hookimpl(specname="neurocds_compute_facts")(lambda facts: None)},
            "implements neurocds_compute_facts 2 times",
        ),
        ({"neurocds_finding_detail": hookimpl(wrapper=True)(lambda finding_id: (yield))}, "declared a wrapper"),
        (
            {"neurocds_compute_facts": hookimpl(lambda facts, patient: None)},
            "asks for patient, which the hook does not",
        ),
    ],
)
def test_a_plugin_pluggy_would_call_ambiguously_is_refused(tmp_path: Path, extra: dict[str, Any], words: str) -> None:
    plugin = inline_pack(tmp_path, "reg", "reg", [rule("reg.fires", ALWAYS)], compute=lambda facts: None)
    for name, value in extra.items():
        setattr(plugin, name, value)
    with pytest.raises(PackLoadError, match=words):
        Engine(packs=[*BUILTIN_PACKS, "reg"], plugins=[("reg", plugin)])


def test_a_fhir_maps_plugin_that_raises_while_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurocds.fhir import MappingSourceFailure, default_mapping_paths

    site = tmp_path / "site"
    meta = site / "listless_maps-0.0.1.dist-info"
    meta.mkdir(parents=True)
    (site / "listless_maps.py").write_text("def __dir__():\n    raise RuntimeError('no listing today')\n")
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: listless-maps\nVersion: 0.0.1\n")
    (meta / "entry_points.txt").write_text("[neurocds.fhir_maps]\nlistless = listless_maps\n")
    monkeypatch.syspath_prepend(str(site))
    problems: list[MappingSourceFailure] = []
    assert default_mapping_paths(problems, allow=["listless"]) == []
    (problem,) = problems
    assert "listless" in problem.source and "registration raised RuntimeError: no listing today" in str(problem)


def test_depends_on_is_read_once_so_what_is_kept_is_what_was_checked(tmp_path: Path) -> None:
    from neurocds.hookspecs import RulePack
    from neurocds.rules.hook_answers import check_records

    class Sly(str):
        pass

    class Shifty(list[str]):
        """Plain names on the first pass, a str subclass (pack code in its methods) after."""

        passes = 0

        def __iter__(self) -> Iterator[str]:
            Shifty.passes += 1
            return iter(["base"] if Shifty.passes == 1 else [Sly("base")])

    record = RulePack(name="p", version="1", rule_files=[], depends_on=Shifty(["base"]))
    (kept,) = check_records([record])
    assert [type(dep) for dep in kept.depends_on] == [str]


def test_a_plugins_import_and_registration_share_one_load_budget(tmp_path: Path) -> None:
    # 0.15 s of CPU while pluggy reads it and 0.15 s more in neurocds_register_packs: each
    # is within the 0.2 s load budget, together they are not (fresh budgets would pass it).
    record = inline_pack(tmp_path, "reg", "reg", [rule("reg.fires", ALWAYS, urgency="info")]).neurocds_register_packs

    def spin(cpu_s: float) -> None:
        started = time.thread_time()
        while time.thread_time() - started < cpu_s:
            pass

    class Costly:
        def __dir__(self) -> list[str]:
            spin(0.15)
            return list(object.__dir__(self))

        @staticmethod
        @hookimpl
        def neurocds_register_packs() -> Any:
            spin(0.15)
            return record()

    engine, _ = load(Costly())
    (failed,) = engine.failed_packs
    assert failed.name == "reg" and "neurocds_register_packs" in (failed.error or ""), failed.error
    assert re.search("budget of 200 ms of CPU time|wall-clock limit of 1000 ms", failed.error or "")
