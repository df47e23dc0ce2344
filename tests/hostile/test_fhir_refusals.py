"""The worst FHIR shapes under the size limit are refused cheaply, each with its pointer (issue 11).

FHIR text (a Bundle, a CDS Hooks call) is held to size and depth only, so a megabyte of
74,000 objects each repeating a name, or a problem after 15,000 clean resources, reaches
the parser whole. The target is 50 ms per refusal (``python tests/perf/bench_refusal.py``
measures medians); this test asserts a generous bound that a return to a Python step per
object (150 ms on a quiet machine, several times that under load) would still not cross,
but a quadratic walk or an unbounded violation list would.
"""

from __future__ import annotations

import time

import pytest

from neurocds.errors import FactsValidationError
from neurocds.facts.strictjson import fhir_limits, parse_strict

from .corpus import LIMIT, fhir_corpus

# CPU seconds for one refusal: 20 times the target, for a loaded shared machine.
BOUND_S = 1.0
SHAPES = fhir_corpus()


@pytest.mark.parametrize(("body", "pointer"), [(b, p) for _n, b, p in SHAPES], ids=[n for n, _b, _p in SHAPES])
def test_a_hostile_fhir_body_is_refused_within_the_bound_naming_its_pointer(body: bytes, pointer: str) -> None:
    assert len(body) <= LIMIT
    limits = fhir_limits(LIMIT, 64)  # what the CDS Hooks service and `evaluate --fhir` use
    parse_strict(b'{"resourceType":"Bundle"}', limits)  # first use (lazy imports) is not the refusal
    started = time.process_time()
    with pytest.raises(FactsValidationError) as info:
        parse_strict(body, limits)
    elapsed = time.process_time() - started
    violations = info.value.violations
    assert violations[0].pointer == pointer
    assert len(violations) <= 100
    assert elapsed < BOUND_S, f"refused in {elapsed:.2f} s CPU"
