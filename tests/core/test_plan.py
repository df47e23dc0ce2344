"""The compiled evaluation plan against a plain recursive Kleene evaluator, node by node.

The plan is the only evaluator in production (the reference backend and every
explanation read its slots), so it is checked here against the definition written
the obvious way: every node's state must match, and so must the set of nodes never
reached because ``all`` met a false child or ``any`` a true one, since explanations
leave those out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from example_docs import examples_with_unknowns
from hypothesis import given, settings
from hypothesis import strategies as st
from kleene_oracle import Tri, oracle

from neurocds import Engine
from neurocds.rules.conditions import All, AnyOf, Condition, DerivedRef, FactTest, FindingRef, ItemTest, Not
from neurocds.rules.plan import UNSET, Plan
from neurocds_packs import BUILTIN_PACKS


def expected_mask(node: Condition, seen: dict[int, Tri], plan: Plan, ref_masks: Mapping[Any, int]) -> int:
    """The unrecorded facts under an undecided node, as the plan's bits (the definition, recursively)."""
    if seen.get(id(node), UNSET) is not None:  # decided, or never reached
        return 0
    if isinstance(node, FactTest | ItemTest):
        return 1 << plan.pointers.index(node.pointer)
    if isinstance(node, DerivedRef | FindingRef):
        return ref_masks.get(node.key, 0)
    mask = 0
    for child in node.children():
        mask |= expected_mask(child, seen, plan, ref_masks)
    return mask


class Refs:
    sole_states = None  # every reference is asked through ref_state

    def __init__(self, states: Mapping[Any, Tri], masks: Mapping[Any, int]):
        self.states, self.masks = states, masks

    def ref_state(self, key: Any) -> Tri:
        return self.states.get(key)

    def ref_unknowns(self, key: Any) -> int:
        # Asked only after evaluating, when an explanation derives the masks from the states.
        return self.masks.get(key, 0)


def assert_plan_matches(
    roots: list[Condition], facts: Mapping[str, Any], refs: Mapping[Any, Tri], ref_masks: Mapping[Any, int]
) -> None:
    plan = Plan(roots)
    states = plan.new_states()
    # An evaluation's masks only ever hold bits of the plan's own pointers.
    ref_masks = {key: mask & ((1 << len(plan.pointers)) - 1) for key, mask in ref_masks.items()}
    assert list(plan.pointers) == sorted({n.pointer for r in roots for n in r.walk() if hasattr(n, "pointer")})
    for root, fn in zip(roots, plan.rule_fns, strict=True):
        seen: dict[int, Tri] = {}
        expected = oracle(root, facts, refs, seen)
        source = Refs(refs, ref_masks)
        assert fn(facts, states, source) is expected
        found: dict[int, int] = {}
        for node in root.walk():
            assert states[plan.slot(node)] is seen.get(id(node), UNSET), node
            mask = plan.unknowns(plan.slot(node), states, found, source.ref_unknowns)
            assert mask == expected_mask(node, seen, plan, ref_masks), node
        mask = plan.unknowns(plan.slot(root), states, found, source.ref_unknowns)
        assert plan.pointers_of(mask) == tuple(p for i, p in enumerate(plan.pointers) if mask >> i & 1)


# Paths of one, two and three steps: the plan reads two-step paths inline, the others through lookup().
NUMBER_PATHS = [("n",), ("s", "n"), ("s", "deep", "n")]
leaf_numbers = st.builds(
    FactTest,
    st.sampled_from(NUMBER_PATHS),
    st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte", "is_not"]),
    st.integers(-2, 2),
)
leaf_flags = st.builds(FactTest, st.just(("s", "flag")), st.sampled_from(["eq", "ne", "is_not"]), st.booleans())
leaf_known = st.builds(FactTest, st.sampled_from([*NUMBER_PATHS, ("s", "flag")]), st.just("known"), st.booleans())
leaf_in = st.builds(FactTest, st.sampled_from(NUMBER_PATHS), st.just("in"), st.lists(st.integers(-2, 2)).map(tuple))
leaf_items = st.builds(
    ItemTest, st.just(("s", "items")), st.just("k"), st.sampled_from(["eq", "gt"]), st.integers(0, 2)
)
leaf_refs = st.one_of(st.builds(DerivedRef, st.sampled_from(["d1", "d2"])), st.builds(FindingRef, st.just("f1")))
leaves = st.one_of(leaf_numbers, leaf_flags, leaf_known, leaf_in, leaf_items, leaf_refs)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(All, st.lists(inner, min_size=1, max_size=4).map(tuple)),
        st.builds(AnyOf, st.lists(inner, min_size=1, max_size=4).map(tuple)),
        st.builds(Not, inner),
    ),
    max_leaves=12,
)
maybe_number = st.one_of(st.none(), st.integers(-2, 2))
items = st.lists(st.fixed_dictionaries({}, optional={"k": st.integers(0, 2)}), max_size=3)
sections = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.integers(-2, 2),
            "flag": st.booleans(),
            "items": items,
            "deep": st.fixed_dictionaries({}, optional={"n": st.integers(-2, 2)}),
        },
    ),
    st.just([1, 2]),  # not an object: every path through it is unrecorded
)
documents = st.fixed_dictionaries({}, optional={"n": st.integers(-2, 2), "s": sections})
REF_KEYS = [("derived", "d1", True), ("derived", "d2", True), ("finding", "f1", True)]
ref_states = st.fixed_dictionaries({key: st.sampled_from([True, False, None]) for key in REF_KEYS})
# What an undecided conclusion contributes is the evaluation's business; any mask tests the ORs.
ref_masks = st.fixed_dictionaries({key: st.integers(0, 2**20) for key in REF_KEYS})


@settings(max_examples=600, deadline=None)
@given(st.lists(trees, min_size=1, max_size=3), documents, ref_states, ref_masks)
def test_plan_states_and_unknowns_match_the_oracle_on_random_trees(roots, facts, refs, masks):
    assert_plan_matches(roots, facts, refs, masks)


def test_a_node_shared_by_two_parents_keeps_one_slot():
    shared = FactTest(("s", "n"), "gt", 0)
    roots: list[Condition] = [All((shared, FactTest(("s", "flag"), "eq", True))), AnyOf((shared,))]
    plan = Plan(roots)
    assert plan.size == 4
    assert_plan_matches(roots, {"s": {"n": 1}}, {}, {})
    assert_plan_matches(roots, {"s": {"flag": True}}, {}, {})


def test_plan_matches_the_oracle_on_the_builtin_packs():
    engine = Engine(packs=BUILTIN_PACKS, verify=False)
    unreached = 0
    for doc in examples_with_unknowns(150, seed=5):
        facts = engine.validate(doc)
        _, ev = engine.reference.run(facts, {})
        refs = {}
        for index in engine.reference.order:
            rule = engine.rules[index]
            seen: dict[int, Tri] = {}
            assert oracle(rule.when, facts, refs, seen) is ev.rule_state[index], rule.id
            ref_masks = {key: ev.ref_unknowns(key) for key in engine.reference.concluders}
            for node in rule.when.walk():
                assert ev.state(node) is seen.get(id(node), UNSET), (rule.id, node)
                slot = engine.reference.plan.slot(node)
                assert ev.unknown_masks[slot] == expected_mask(node, seen, engine.reference.plan, ref_masks)
                unreached += ev.state(node) is UNSET
            refs = {key: ev.ref_state(key) for key in engine.reference.concluders}
    assert unreached > 0  # short-circuiting really happened, so UNSET was compared too


def test_the_mask_cache_stays_bounded_and_answers_correctly_past_its_bound():
    from neurocds.rules.plan import POINTER_CACHE_SIZE

    roots: list[Condition] = [FactTest(("s", f"f{i}"), "eq", 1) for i in range(14)]
    plan = Plan(roots)
    assert len(plan.pointers) == 14
    for mask in range(1, 2 * POINTER_CACHE_SIZE + 1):  # twice the bound: the cache is emptied and refilled
        expected = tuple(p for i, p in enumerate(plan.pointers) if mask >> i & 1)
        assert plan.pointers_of(mask) == expected
        assert len(plan._pointer_cache) <= POINTER_CACHE_SIZE


def test_one_list_of_operators_is_what_the_schema_the_plan_and_the_wording_know():
    from neurocds.resources import load_schema
    from neurocds.rules.conditions import COMPARISONS, FACT_OPS, OP_SYMBOL
    from neurocds.rules.plan import COMPARE

    branches = load_schema("ruleset.schema.json")["$defs"]["condition"]["oneOf"]
    fact_test = next(b for b in branches if b.get("required") == ["fact"])
    item_test = next(b for b in branches if b.get("required") == ["any_item", "where"])
    assert set(fact_test["properties"]) - {"fact"} == set(FACT_OPS)
    assert set(item_test["properties"]["where"]["properties"]) - {"field"} == set(COMPARISONS)
    assert set(COMPARE) == set(OP_SYMBOL) == set(COMPARISONS)


def test_the_mask_cache_grows_with_the_plan_so_one_large_rule_set_does_not_thrash_it():
    from itertools import combinations

    from neurocds.rules.plan import POINTER_CACHE_SIZE

    # 4,960 rules over distinct triples of 32 facts: with every fact unknown, one document
    # yields more distinct masks than the fixed bound, which used to empty the cache each time.
    triples = list(combinations(range(32), 3))
    roots: list[Condition] = [All(tuple(FactTest(("s", f"f{i:02d}"), "eq", 1) for i in t)) for t in triples]
    plan = Plan(roots)
    masks = [sum(1 << i for i in t) for t in triples]
    assert len(set(masks)) > POINTER_CACHE_SIZE
    for mask in masks:
        plan.pointers_of(mask)
    first = dict(plan._pointer_cache)
    assert len(first) == len(masks)  # never emptied on the way
    for mask in masks:  # a second document with the same unknowns: all hits, the same tuples
        assert plan.pointers_of(mask) is first[mask]
