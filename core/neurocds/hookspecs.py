"""The hook API a rule pack implements: this module *is* the pack author's reference.

A pack is a Python module (or package) that implements some of the hooks below
with :data:`hookimpl` and is made known to neurocds through the entry-point group
``neurocds.packs``::

    # pyproject.toml of your distribution
    [project.entry-points."neurocds.packs"]
    my-pack = "my_distribution.my_pack"

Built-in packs are declared the same way in neurocds' own ``pyproject.toml`` and
registered through the same call, so nothing a built-in pack can do is closed to
you. Which packs load is decided by the allowlist (``NEUROCDS_PACKS`` or the CLI
option ``--packs``): a comma-separated list of pack names.

Every hook name starts with ``neurocds_``. Each :class:`~neurocds.engine.Engine`
owns its own plugin manager, so hooks are never shared between engines.

What a pack can and cannot do. A pack adds rules (data) and, through hooks, derived
facts in its own namespace and extra text for its own findings. It cannot change
what anyone else sees or concludes:

* hooks receive the facts as a deep read-only view (mappings are
  :class:`types.MappingProxyType`, arrays are tuples): assigning raises ``TypeError``.
  The result's ``facts_sha256`` and the audit record are of the document as sent;
* everything a hook returns is checked (the shapes below); anything else fails the pack;
* each pack's hooks share a budget per evaluation (``Engine(hook_budget=)``, default
  200 ms of CPU time, counted on the pack's own worker thread, so waiting for a CPU or
  the GIL on a busy machine does not count; a hook that blocks is stopped after
  ``hook_wall_factor``, default 5, times the budget of wall-clock time: 1 s); an overrun
  fails the pack and the evaluation returns without it. Pack code runs on a worker
  thread, and no backend lock is held while it runs;
* an exception from pack code, ``SystemExit`` and ``KeyboardInterrupt`` included, fails
  that pack only: the evaluation goes on and the process does not exit;
* a failed pack is named in the result's ``errors`` (with its ``kind``), its status is
  ``failed`` and ``complete`` is false; every other pack still answers.

A pack that cannot load (import error, a register hook that fails, a bad rule file,
a dependency cycle, a reference nothing concludes) is, under the default
``on_pack_error="auto"``, left out and reported in every result when it was merely
installed, and an error when it was asked for by name (allowlist or ``plugins=``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

PROJECT_NAME = "neurocds"
ENTRY_POINT_GROUP = "neurocds.packs"
# The built-in FHIR mapping tables are found here, so that core never imports them by name.
FHIR_MAPS_ENTRY_POINT_GROUP = "neurocds.fhir_maps"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@dataclass(frozen=True)
class RulePack:
    """The registration record a pack returns from :func:`neurocds_register_packs`.

    :param name: stable pack name, lower-case words joined by ``-`` (``"spinal-compression"``).
        Rule ids of the pack must start with a prefix the pack owns; two packs with the
        same name are a load error naming both sources.
    :param version: the pack's version (semantic versioning). It is recorded in every
        result and audit record together with a SHA-256 of the rule files' content.
    :param rule_files: paths of the pack's rule files (YAML or JSON), each validated
        against ``schemas/ruleset.schema.json``. They are data: nothing in them is executed.
    :param depends_on: names of packs whose derived facts or findings this pack's rules
        use. They are loaded first; a missing one is a load error.
    :param facts_schema: JSON Schema (2020-12) for the pack's own input fields, which live
        under ``extensions.<name>`` in the facts document. ``None``: the pack has none.
    :param description: one sentence for ``neurocds packs list``.
    :param detailed_findings: the finding ids (concluded by this pack's own rules) that its
        :func:`neurocds_finding_detail` may add text to. ``None`` (the default): the hook
        is called for every finding of the pack that fires. Declared: it is called only
        for these, so an evaluation in which none of them fired runs none of the pack's
        detail code (no worker-thread round trip, no read-only copy of the facts made
        for it): most evaluations, for a pack that details a few of its findings. An id
        that none of the pack's rules concludes is a load error (a typo would otherwise
        silence the detail). ``()``: the hook is never called for this pack.
    """

    name: str
    version: str
    rule_files: Sequence[Path]
    depends_on: Sequence[str] = ()
    facts_schema: Mapping[str, Any] | None = None
    description: str = ""
    detailed_findings: Sequence[str] | None = None


@dataclass(frozen=True)
class ComputedFacts:
    """Facts a pack computes in Python, returned by :func:`neurocds_compute_facts`.

    :param pack: the name of the pack that computed them (must be one it registered).
    :param values: derived-fact name -> a finite JSON scalar: string (at most 1,000
        characters of valid Unicode), number (integers within ±2**53) or boolean
        (``{"myext.score": 3}``), of the kind the rules use for that name; a list,
        object, NaN, infinity or a value of another kind fails the pack. Names must
        start with a namespace of the pack's own rule files (``myext.``): a name in
        another pack's namespace fails the pack. At most 256 values. Absent means unknown.
    :param because: derived-fact name (one of ``values``) -> JSON pointers of the input
        facts it used (at most 64), so the explanation trace can lead back to the input.
    """

    pack: str
    values: Mapping[str, Any]
    because: Mapping[str, Sequence[str]] = field(default_factory=dict)


@hookspec
def neurocds_register_packs() -> list[RulePack]:  # type: ignore[empty-body]  # a spec: pack modules implement it
    """Return the rule packs this plugin provides.

    Called once, when an :class:`~neurocds.engine.Engine` is created, before any
    facts are seen, on a worker thread within the load budget (``Engine(load_budget=)``,
    default 10 s of CPU time, 50 s of wall-clock time, shared with the plugin's import and
    registration). Before it, pluggy reads the
    plugin's hooks on that worker too (a ``__dir__`` or ``__eq__`` that hangs or raises
    fails the plugin, not the engine). Rule files are read, validated and compiled right after; an
    error there is a :class:`~neurocds.errors.PackLoadError` naming the pack, the
    file and the JSON pointer of the bad rule. A reference (``{derived: ...}``,
    ``{finding: ...}``) that no loaded rule or compute hook can conclude, a numeric
    threshold outside the facts schema's range, and a regex in ``facts_schema`` that
    could run away are load errors too.

    If this hook raises (anything, ``SystemExit`` included), overruns or returns
    something else, the plugin is unregistered (none of its hooks ever runs) and
    handled by ``on_pack_error``.

    :returns: a list (or tuple) of :class:`RulePack` records (usually one).

    Example::

        from pathlib import Path
        from neurocds.hookspecs import RulePack, hookimpl

        HERE = Path(__file__).parent

        @hookimpl
        def neurocds_register_packs() -> list[RulePack]:
            return [RulePack(name="my-pack", version="1.0.0",
                             rule_files=[HERE / "my-pack.yaml"],
                             depends_on=["weakness-pattern"])]
    """


@hookspec
def neurocds_compute_facts(facts: Mapping[str, Any]) -> ComputedFacts | None:
    """Compute derived facts that declarative rules cannot express.

    Called once per evaluation, after the facts document passed validation and
    before any rule runs, for every loaded plugin that implements it (once per
    plugin, even if it registered several packs). The values are
    added as derived facts that rules can match (``{derived: name, ...}``) and the
    trace shows them with their ``because`` pointers.

    Declare in the pack's ``pack.yaml`` which fact paths each value reads
    (``computed_facts: {my.older_adult: {reads: [patient.age_years]}}``): the DSI
    source-attribute sheet follows them, and a case fails when ``because`` names
    a path that is not declared.

    If this hook raises (``SystemExit`` and ``KeyboardInterrupt`` included), overruns
    the pack's budget, or returns anything but ``None`` or a valid :class:`ComputedFacts`
    of its own packs, the pack is reported as failed in the result (``errors[]`` kind
    ``compute_hook``, ``packs[]`` status ``failed``, ``complete: false``), none of its
    values is used, its rules do not run, and every other pack still runs. Never raise
    to say "not applicable": return ``None``.

    :param facts: the validated facts document as a deep read-only view (mappings are
        read-only proxies, arrays are tuples); the same view every hook sees.
    :returns: a :class:`ComputedFacts` record, or ``None`` when nothing applies.

    Example::

        @hookimpl
        def neurocds_compute_facts(facts):
            age = facts.get("patient", {}).get("age_years")
            if age is None:
                return None          # unknown stays unknown
            return ComputedFacts(pack="my-pack", values={"my.older_adult": age >= 65},
                                 because={"my.older_adult": ["/patient/age_years"]})
    """


@hookspec
def neurocds_finding_detail(
    finding_id: str, rule_id: str, facts: Mapping[str, Any], derived: Mapping[str, Any]
) -> str | None:
    """Add case-specific text to the detail of a finding when its rule fires.

    Called once per evaluation for each rule of this pack that concluded a finding
    (only those of :attr:`RulePack.detailed_findings` when the pack declares them),
    after the rules have run (once, however many backends evaluated; never while a
    backend lock is held). Return ``None`` for findings that are not yours. An
    exception (``SystemExit`` included), an overrun of the pack's budget, or a return
    value that is not ``None`` or a string of at most 2,000 characters of valid Unicode
    becomes an error of kind ``action`` naming the rule; the finding stays (without the
    text), the pack is reported as failed and the rest of the evaluation goes on.

    :param finding_id: the finding's stable id (``"my.finding"``).
    :param rule_id: the id of the rule that concluded it.
    :param facts: the validated facts document as a deep read-only view.
    :param derived: every derived fact the evaluation concluded or computed (name ->
        value), read-only.
    :returns: a sentence to append to the finding's detail, or ``None``.

    Declare the findings it details (``RulePack(..., detailed_findings=["my.finding"])``)
    and it is called only in the evaluations where one of them fired.

    Example::

        @hookimpl
        def neurocds_finding_detail(finding_id, rule_id, facts, derived):
            if finding_id != "my.finding":
                return None
            return f"Recorded at age {facts['patient']['age_years']}."
    """


@hookspec
def neurocds_fhir_mappings() -> list[Path]:  # type: ignore[empty-body]  # a spec: plugins implement it
    """Return mapping-table files that turn FHIR R4 resources into facts.

    Called when a FHIR bundle is converted (``neurocds fhir-to-facts``, ``evaluate
    --fhir`` and the CDS Hooks service). Each file is data validated against
    ``schemas/fhir-mapping.schema.json``: codes (SNOMED CT, ICD-10, LOINC, RxNorm)
    to fact paths, with units and conversions.

    :returns: paths of YAML mapping files.

    Example::

        @hookimpl
        def neurocds_fhir_mappings():
            return [Path(__file__).parent / "my-codes.yaml"]
    """


HOOK_NAMES: tuple[str, ...] = (
    "neurocds_register_packs",
    "neurocds_compute_facts",
    "neurocds_finding_detail",
    "neurocds_fhir_mappings",
)
