"""Differential testing: durable_rules and the reference evaluator agree on thousands of documents.

A rule pack built here covers every operator (eq, ne, lt, lte, gt, gte, in, known, is_not,
not, all, any, any_item, derived references with values, finding references, computed facts,
chains more than 3 deep, disjunctions over conclusions). Documents are generated at random
with every field tri-state (absent, or a value), boundary values around every threshold and
floats Python writes with an exponent. For each document the raw runs of both backends must
fire the same rules and conclude the same derived facts, and the engine must report no
disagreement. A second test does the same with whatever packs are installed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("durable_rules_engine")

from neurocds import Engine, FactsValidationError
from neurocds.hookspecs import ComputedFacts
from neurocds.resources import load_schema
from neurocds.rules.conditions import FactTest, ItemTest
from neurocds.testing import inline_pack, rule
from neurocds_packs import BUILTIN_PACKS

SEEDED_DOCUMENTS = 3000
HYPOTHESIS_EXAMPLES = 300
BUILTIN_DOCUMENTS = 2000

DIFF_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "label": {"type": "string"},
        "readings": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["value"],
                "properties": {
                    "value": {"type": "number"},
                    "site": {"type": "string", "enum": ["arm", "leg", "trunk"]},
                },
            },
        },
    },
}

FEVER = {"fact": "symptoms.fever", "eq": True}
HEADACHE = {"fact": "symptoms.headache", "eq": True}
LEFT_WEAK = {"fact": "strength.left_leg", "lte": 4}
RIGHT_WEAK = {"fact": "strength.right_leg", "lte": 4}
READINGS = "extensions.diff.readings"

RULES = [
    # one rule per operator on input facts
    rule("df.eq_bool", FEVER),
    rule("df.ne_enum", {"fact": "exam.reflexes_legs", "ne": "normal"}),
    rule("df.ne_num", {"fact": "labs.ck_u_l", "ne": 1000}),
    rule("df.lt", {"fact": "labs.potassium_mmol_l", "lt": 3.0}),
    rule("df.lte_int", LEFT_WEAK, derive="df.weak_left"),
    rule("df.gt", {"fact": "labs.ck_u_l", "gt": 1000}),
    rule("df.gte", {"fact": "patient.age_years", "gte": 65}),
    rule("df.eq_int_float", {"fact": "strength.left_arm", "eq": 4.0}),
    rule("df.in_enum", {"fact": "exam.reflexes_legs", "in": ["reduced", "absent"]}),
    rule("df.in_int", {"fact": "strength.right_leg", "in": [0, 1, 2]}),
    rule("df.in_float", {"fact": "labs.tsh_mu_l", "in": [0.1, 2.5e-07, 1e-05]}),
    rule("df.known", {"fact": "labs.tsh_mu_l", "known": True}),
    rule("df.not_known", {"fact": "labs.tsh_mu_l", "known": False}),
    rule("df.is_not_enum", {"fact": "exam.plantar_response", "is_not": "extensor"}),
    rule("df.is_not_bool", {"fact": "symptoms.headache", "is_not": True}),
    rule("df.is_not_num", {"fact": "labs.ck_u_l", "is_not": 0}),
    rule("df.eq_string", {"fact": "patient.id", "eq": "Zoë-Ñ"}),
    rule("df.sex", {"fact": "patient.sex", "in": ["female", "other"]}),
    # exponent floats and signs on an extension field
    rule("df.score_eq", {"fact": "extensions.diff.score", "eq": 0.1}),
    rule(
        "df.score_small",
        {"all": [{"fact": "extensions.diff.score", "lt": 1e-05}, {"fact": "extensions.diff.score", "gte": -1e-300}]},
    ),
    rule("df.score_huge", {"fact": "extensions.diff.score", "gte": 1e16}),
    rule("df.label", {"fact": "extensions.diff.label", "eq": 'q"\\/é'}),
    # negation, pushed down to the leaves by the compiler
    rule(
        "df.not_compound", {"not": {"all": [FEVER, {"any": [HEADACHE, {"fact": "labs.potassium_mmol_l", "lt": 3.5}]}]}}
    ),
    rule("df.not_in", {"not": {"fact": "exam.reflexes_legs", "in": ["brisk", "normal"]}}),
    rule("df.not_is_not", {"not": {"fact": "exam.plantar_response", "is_not": "flexor"}}),
    rule("df.not_known_false", {"not": {"fact": "onset.hours_since_onset", "known": False}}),
    rule("df.not_lte", {"all": [{"not": {"fact": "onset.hours_since_onset", "lte": 4.5}}, {"not": {"not": FEVER}}]}),
    rule(
        "df.nested",
        {
            "all": [
                {"any": [FEVER, {"fact": "symptoms.back_pain", "eq": True}]},
                {"not": {"fact": "symptoms.headache", "eq": False}},
                {"fact": "patient.age_years", "gte": 18},
            ]
        },
    ),
    # any_item, over a base array (strings) and an extension array (numbers, optional field)
    rule("df.item_class", {"any_item": "medications", "where": {"field": "class", "eq": "statin"}}),
    rule("df.item_ne", {"any_item": "medications", "where": {"field": "class", "ne": "other"}}),
    rule(
        "df.item_name",
        {"any_item": "medications", "where": {"field": "name", "in": ["Atorvastatin", "Ibuprofène", "阿托伐他汀"]}},
    ),
    rule("df.item_gt", {"any_item": READINGS, "where": {"field": "value", "gt": 1e-05}}),
    rule("df.item_lte", {"any_item": READINGS, "where": {"field": "value", "lte": -2.5e-07}}),
    rule("df.item_site", {"any_item": READINGS, "where": {"field": "site", "eq": "leg"}}),
    rule("df.item_and", {"all": [{"any_item": READINGS, "where": {"field": "site", "in": ["arm", "trunk"]}}, FEVER]}),
    # derived facts with values (string, number, boolean) and references to them
    rule("df.side_left", {"all": [LEFT_WEAK, {"fact": "strength.right_leg", "eq": 5}]}, derive="df.side", value="left"),
    rule(
        "df.side_right", {"all": [RIGHT_WEAK, {"fact": "strength.left_leg", "eq": 5}]}, derive="df.side", value="right"
    ),
    rule("df.side_both", {"all": [LEFT_WEAK, RIGHT_WEAK]}, derive="df.side", value="both"),
    rule("df.count", {"all": [FEVER, HEADACHE]}, derive="df.count", value=2),
    rule("df.flag", {"fact": "symptoms.fever", "eq": False}, derive="df.flag", value=False),
    rule("df.mood_a", FEVER, derive="df.mood", value="a"),  # two values of one derived fact can co-fire
    rule("df.mood_b", HEADACHE, derive="df.mood", value="b"),
    rule("df.use_side", {"derived": "df.side", "eq": "left"}),
    rule("df.use_count", {"derived": "df.count", "eq": 2}),
    rule("df.use_flag", {"all": [{"derived": "df.flag", "eq": False}, HEADACHE]}),
    rule("df.use_mood", {"all": [{"derived": "df.mood", "eq": "b"}, {"derived": "df.mood", "eq": "a"}]}),
    # a disjunction over a conclusion and an input fact (split into sibling durable rules)
    rule("df.leg_weak", {"any": [{"derived": "df.weak_left"}, RIGHT_WEAK]}, derive="df.leg_weak"),
    # a chain five conclusions deep, through derived facts and findings
    rule("df.c1", {"any": [{"fact": "labs.ck_u_l", "gt": 500}, {"derived": "df.leg_weak"}]}, derive="df.c1"),
    rule("df.c2", {"all": [{"derived": "df.c1"}, {"fact": "patient.age_years", "gte": 40}]}, derive="df.c2"),
    rule("df.c3", {"all": [{"derived": "df.c2"}, {"any": [{"derived": "df.side", "eq": "both"}, FEVER]}]}),
    rule("df.c4", {"all": [{"finding": "df.c3"}, {"not": HEADACHE}]}),
    rule("df.c5", {"any": [{"finding": "df.c4"}, {"all": [{"finding": "df.eq_bool"}, {"finding": "df.item_site"}]}]}),
    # computed facts (from the pack's compute hook)
    rule("df.band_low", {"derived": "df.k_band", "eq": "low"}),
    rule("df.sign", {"all": [{"derived": "df.score_sign", "eq": -1}, {"derived": "df.has_meds", "eq": False}]}),
    rule("df.meds", {"any": [{"derived": "df.has_meds", "eq": True}, {"derived": "df.k_band", "eq": "high"}]}),
]


def compute(facts: Mapping[str, Any]) -> ComputedFacts | None:
    values: dict[str, Any] = {}
    k = facts.get("labs", {}).get("potassium_mmol_l")
    if k is not None:
        values["df.k_band"] = "low" if k < 3.5 else ("high" if k > 5.5 else "normal")
    score = facts.get("extensions", {}).get("diff", {}).get("score")
    if score is not None:
        values["df.score_sign"] = (score > 0) - (score < 0)
    if "medications" in facts:
        values["df.has_meds"] = bool(facts["medications"])
    return ComputedFacts(pack="diff", values=values) if values else None


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    plugin = inline_pack(
        tmp_path_factory.mktemp("differential"), "diff", "df", RULES, facts_schema=DIFF_SCHEMA, compute=compute
    )
    engine = Engine(plugins=[("diff", plugin)], entry_points=False)
    assert len(engine.rules) == len(RULES) and engine.durable is not None and engine.verify
    return engine


# ----------------------------------------------------------------------------- value pools
EXPONENT_FLOATS = [1e-05, 2.5e-07, 1e16, 1e-300, 5e-324, 1e22, 1.5e-10, 7e20]
STRINGS = ["p", "Zoë-Ñ", "Zoe\u0308-Ñ", 'q"\\/é', "", "阿托伐他汀", "x" * 64, "💊", "a\nb"]
MED_NAMES = ["Atorvastatin", "atorvastatin", "Ibuprofène", "Ibuprofe\u0300ne", "阿托伐他汀", "Metformin 💊", 'q"\\']
MED_CLASSES = ["statin", "corticosteroid", "loop_or_thiazide_diuretic", "fluoroquinolone", "other"]


def around(*thresholds: float) -> list[float]:
    out: list[float] = []
    for t in thresholds:
        out += [t, math.nextafter(t, -math.inf), math.nextafter(t, math.inf), t - 1, t + 1]
    return out


NONNEG = sorted(
    {v for v in around(3.0, 3.5, 5.5, 500, 1000, 4.5, 0.1, 0) + EXPONENT_FLOATS if v >= 0} | {0, 3, 1000, 2**53}
)
AGES = [0, 17, 17.999999, 18, 39.5, 40, 64, 64.99999999999999, 65, 65.0, 90, 130]
SIGNED = sorted(
    set(around(0.1, 1e-05, -2.5e-07, 1e16, 0) + EXPONENT_FLOATS + [-x for x in EXPONENT_FLOATS] + [-(2**53), 2**53])
)

ENUMS = {
    "exam.reflexes_legs": ["absent", "reduced", "normal", "brisk"],
    "exam.plantar_response": ["flexor", "extensor", "equivocal"],
    "patient.sex": ["female", "male", "other", "unknown"],
}
BOOLS = ["symptoms.fever", "symptoms.headache", "symptoms.back_pain"]
GRADES = ["strength.left_leg", "strength.right_leg", "strength.left_arm"]
# Labs carry physiologically possible bounds in the facts schema: their values stay inside them
# (onset hours and the extension's score still carry 2**53 and the exponent floats).
LAB_BOUNDS = {
    f"labs.{name}": (spec["minimum"], spec["maximum"])
    for name, spec in load_schema("facts.schema.json")["properties"]["labs"]["properties"].items()
}


def within(path: str, values: list[float]) -> list[float]:
    low, high = LAB_BOUNDS[path]
    return [v for v in values if low <= v <= high]


def lab_values(path: str) -> st.SearchStrategy[Any]:
    low, high = LAB_BOUNDS[path]
    floats = st.floats(min_value=low, max_value=high, allow_nan=False)
    return st.one_of(st.sampled_from(within(path, NONNEG)), floats, st.integers(math.ceil(low), math.floor(high)))


NUMBERS = {
    "labs.potassium_mmol_l": within("labs.potassium_mmol_l", NONNEG),
    "labs.ck_u_l": within("labs.ck_u_l", NONNEG),
    "labs.tsh_mu_l": within("labs.tsh_mu_l", NONNEG),
    "onset.hours_since_onset": NONNEG,
    "patient.age_years": AGES,
    "extensions.diff.score": SIGNED,
}


def put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def random_document(rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {"facts_version": "1", "patient": {"id": rng.choice([*STRINGS[:4], "p1"])}}
    presence = rng.random()  # some documents are sparse, some nearly complete

    def present() -> bool:
        return rng.random() < presence

    for path in BOOLS:
        if present():
            put(doc, path, rng.random() < 0.5)
    for path in GRADES:
        if present():
            put(doc, path, rng.randint(0, 5) if rng.random() < 0.6 else rng.choice([4, 5]))
    for path, values in ENUMS.items():
        if present():
            put(doc, path, rng.choice(values))
    for path, pool in NUMBERS.items():
        if present():
            if rng.random() < 0.8:
                value = rng.choice(pool)
            else:
                low, high = (0.0, 2000.0) if pool is not SIGNED else (-2000.0, 2000.0)
                low, high = LAB_BOUNDS.get(path, (low, high))
                value = rng.uniform(low, high) if path != "patient.age_years" else rng.uniform(0, 130)
            put(doc, path, value)
    if present():
        put(doc, "extensions.diff.label", rng.choice(STRINGS))
    if present():
        doc["medications"] = [
            {"name": rng.choice(MED_NAMES), "class": rng.choice(MED_CLASSES)} for _ in range(rng.randint(0, 3))
        ]
    if present():
        readings = []
        for _ in range(rng.randint(0, 3)):
            reading: dict[str, Any] = {"value": rng.choice(SIGNED)}
            if rng.random() < 0.6:
                reading["site"] = rng.choice(["arm", "leg", "trunk"])
            readings.append(reading)
        put(doc, READINGS, readings)
    return doc


def computed_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = compute(doc)
    return dict(out.values) if out is not None else {}


def check(engine: Engine, doc: dict[str, Any], stats: dict[str, list[int]] | None = None) -> None:
    """Both backends fire the same rules and derive the same facts; the engine sees no disagreement."""
    computed = computed_of(doc)
    durable = engine.durable.run(doc, computed, None)
    reference, _ = engine.reference.run(doc, computed, None)
    names = lambda run: sorted(engine.rules[i].id for i in run.fired_set())  # noqa: E731
    assert names(durable) == names(reference), doc
    assert durable.derived == reference.derived, doc
    assert durable.errors == reference.errors == [], doc
    result = engine.evaluate(doc, trace=False)
    assert result.complete and result.errors == [], (doc, result.errors)
    if stats is not None:
        fired = reference.fired_set()
        for i in range(len(engine.rules)):
            stats["fired" if i in fired else "quiet"][i] += 1


def test_backends_agree_on_seeded_random_documents(engine: Engine) -> None:
    rng = random.Random(20240601)
    stats = {"fired": [0] * len(engine.rules), "quiet": [0] * len(engine.rules)}
    for _ in range(SEEDED_DOCUMENTS):
        check(engine, random_document(rng), stats)
    # The comparison means something only if every rule both fired and stayed quiet many times.
    never = [engine.rules[i].id for i, n in enumerate(stats["fired"]) if n < 5]
    always = [engine.rules[i].id for i, n in enumerate(stats["quiet"]) if n < 5]
    assert never == [] and always == []


def test_co_firing_values_of_one_derived_fact_are_recorded_alike(engine: Engine) -> None:
    doc = {"facts_version": "1", "patient": {"id": "p"}, "symptoms": {"fever": True, "headache": True}}
    check(engine, doc)
    durable = engine.durable.run(doc, {}, None)
    assert {engine.rules[i].id for i in durable.fired} >= {"df.mood_a", "df.mood_b", "df.use_mood"}


# ----------------------------------------------------------------------------- hypothesis
def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)  # None: the field is absent (unknown)


nonneg = st.one_of(
    st.sampled_from(NONNEG), st.floats(min_value=0, max_value=1e20, allow_nan=False), st.integers(0, 2**53)
)
signed = st.one_of(
    st.sampled_from(SIGNED), st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53)
)
ages = st.one_of(st.sampled_from(AGES), st.floats(min_value=0, max_value=130), st.integers(0, 130))
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **{path: st.booleans() for path in BOOLS},
    **{path: st.integers(0, 5) for path in GRADES},
    **{path: st.sampled_from(values) for path, values in ENUMS.items()},
    "labs.potassium_mmol_l": lab_values("labs.potassium_mmol_l"),
    "labs.ck_u_l": lab_values("labs.ck_u_l"),
    "labs.tsh_mu_l": lab_values("labs.tsh_mu_l"),
    "onset.hours_since_onset": nonneg,
    "patient.age_years": ages,
    "extensions.diff.score": signed,
    "extensions.diff.label": st.one_of(st.sampled_from(STRINGS), st.text(max_size=8)),
    "medications": st.lists(
        st.fixed_dictionaries(
            {
                "name": st.one_of(st.sampled_from(MED_NAMES), st.text(min_size=1, max_size=6)),
                "class": st.sampled_from(MED_CLASSES),
            }
        ),
        max_size=3,
    ),
    READINGS: st.lists(
        st.fixed_dictionaries({"value": signed}, optional={"site": st.sampled_from(["arm", "leg", "trunk"])}),
        max_size=3,
    ),
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"facts_version": "1", "patient": {"id": draw(st.sampled_from(STRINGS[:4]))}}
    for path, strategy in FIELDS.items():
        value = draw(optional(strategy))
        if value is not None:
            put(doc, path, value)
    return doc


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents())
def test_backends_agree_on_generated_documents(engine: Engine, doc: dict[str, Any]) -> None:
    check(engine, doc)


# ----------------------------------------------------------------------------- installed packs
def leaf_values(engine: Engine) -> dict[str, list[Any]]:
    """Values the installed rules compare each input path with (and their neighbours)."""
    out: dict[str, list[Any]] = {}
    for r in engine.rules:
        for node in r.when.walk():
            if isinstance(node, FactTest):
                key = ".".join(node.path)
            elif isinstance(node, ItemTest):
                key = ".".join((*node.path, node.field))
            else:
                continue
            values = node.value if isinstance(node.value, tuple) else (node.value,)
            for v in values:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out.setdefault(key, []).extend([v, math.nextafter(v, -math.inf), math.nextafter(v, math.inf)])
                elif isinstance(v, str):
                    out.setdefault(key, []).append(v)
    return out


class SchemaDocuments:
    """Random valid documents for any composed facts schema (tri-state: each optional member may be absent)."""

    def __init__(self, schema: Mapping[str, Any], hints: dict[str, list[Any]], rng: random.Random):
        self.schema, self.hints, self.rng = schema, hints, rng

    def document(self) -> dict[str, Any]:
        presence = self.rng.random()
        doc = self.value(self.schema, "", presence)
        doc["facts_version"] = "1"
        return doc

    def value(self, schema: Mapping[str, Any], path: str, presence: float) -> Any:
        rng = self.rng
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return rng.choice(schema["enum"])
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            out = {}
            required = set(schema.get("required", ()))
            for name, sub in schema.get("properties", {}).items():
                if name in required or rng.random() < presence:
                    value = self.value(sub, f"{path}.{name}".lstrip("."), presence)
                    if value is not None:
                        out[name] = value
            return out
        if kind == "array":
            items = schema.get("items", {})
            return [self.value(items, path, max(presence, 0.5)) for _ in range(rng.randint(0, 3))]
        if kind == "boolean":
            return rng.random() < 0.5
        if kind in ("integer", "number"):
            low, high = schema.get("minimum", -1000), schema.get("maximum", 1000)
            pool = [v for v in self.hints.get(path, []) if low <= v <= high]
            if kind == "integer":
                pool = [v for v in pool if float(v).is_integer()]
                return int(rng.choice(pool)) if pool and rng.random() < 0.6 else rng.randint(int(low), int(high))
            if pool and rng.random() < 0.6:
                return rng.choice(pool)
            tiny = [v for v in EXPONENT_FLOATS if low <= v <= high]
            return rng.choice([rng.uniform(low, high), round(rng.uniform(low, high), 1), rng.choice(tiny or [low])])
        if kind == "string":
            if schema.get("format") == "date-time":
                return "2024-05-01T10:00:00Z"
            if "pattern" in schema:
                return None  # cannot invent a match; leave it out
            pool = [*self.hints.get(path, []), "p", "Zoë", 'q"\\']
            text = rng.choice(pool)
            return text if len(text) >= schema.get("minLength", 0) else "x" * schema["minLength"]
        return None


def test_backends_agree_with_the_installed_packs(tmp_path) -> None:
    engine = Engine(packs=BUILTIN_PACKS)
    assert engine.rules and engine.durable is not None and engine.verify
    generator = SchemaDocuments(engine.facts_schema, leaf_values(engine), random.Random(7))
    verified = invalid = 0
    fired: set[str] = set()
    for _ in range(BUILTIN_DOCUMENTS):
        doc = generator.document()
        try:
            result = engine.evaluate(doc, trace=False)
        except FactsValidationError:
            invalid += 1
            continue
        kinds = [e.get("kind") for e in result.errors]
        assert "disagreement" not in kinds, (doc, result.errors)
        if not {"backend", "budget"} & set(kinds):
            verified += 1  # durable_rules answered and the reference agreed
        fired |= {f["rule"] for f in result.findings}
    assert invalid == 0
    assert verified > BUILTIN_DOCUMENTS * 0.9
    assert fired, "no installed rule fired on any generated document"


def test_backends_agree_with_a_slow_and_a_failing_pack_installed(tmp_path) -> None:
    """The two hostile packs fail every evaluation; the others' answers are exactly as without them."""
    from hostile_packs.hostile import slow_and_failing_plugins

    plain = Engine(packs=BUILTIN_PACKS)
    engine = Engine(plugins=slow_and_failing_plugins(tmp_path), hook_budget=0.5)  # unpinned: a run vs the same run without it
    generator = SchemaDocuments(plain.facts_schema, leaf_values(plain), random.Random(11))
    compared = 0
    for _ in range(BUILTIN_DOCUMENTS // 10):
        doc = generator.document()
        try:
            expected = plain.evaluate(doc, trace=False).to_dict()
        except FactsValidationError:
            continue
        got = engine.evaluate(doc, trace=False).to_dict()
        assert "disagreement" not in [e.get("kind") for e in got["errors"]], (doc, got["errors"])
        assert {"slow-pack"} <= {e.get("pack") for e in got["errors"]} and not got["complete"]
        theirs = [f for f in got["findings"] if not f["id"].startswith(("slow.", "failing."))]
        assert theirs == expected["findings"] and got["derived"] == expected["derived"]
        compared += 1
    assert compared > BUILTIN_DOCUMENTS // 20
