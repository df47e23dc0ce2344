"""Whole-word phrase search (ingredient names in medication text) answers its definition.

``contains_phrase`` searches from each place the phrase's first word occurs (C speed)
instead of comparing a slice at every position; the answer must be the same.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from neurocds.fhir.rules import contains_phrase, words

word_lists = st.lists(st.sampled_from(["a", "b", "c", "acid", "sodium"]), max_size=7).map(tuple)


def by_definition(haystack: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return 0 < n <= len(haystack) and any(haystack[i : i + n] == phrase for i in range(len(haystack) - n + 1))


@settings(max_examples=600, derandomize=True)
@given(word_lists, st.lists(st.sampled_from(["a", "b", "c", "acid"]), max_size=3).map(tuple))
def test_contains_phrase_is_consecutive_whole_words(haystack: tuple[str, ...], phrase: tuple[str, ...]) -> None:
    assert contains_phrase(haystack, phrase) is by_definition(haystack, phrase)


def test_a_phrase_is_found_after_a_false_start() -> None:
    text = words("Valproate semisodium acid; valproic acid 250 MG")
    assert contains_phrase(text, ("valproic", "acid"))
    assert not contains_phrase(text, ("semisodium", "valproic"))
