"""A facts document its validator vouches for: made only by validation, read-only to everyone else.

:meth:`neurocds.facts.validation.FactsValidator.parse_valid` makes one; the same validator
(and so the engine that owns it) takes it back without parsing or validating it again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, final

from neurocds.facts.readonly import freeze, plain_copy

if TYPE_CHECKING:
    from neurocds.facts.validation import FactsValidator

__all__ = ["ValidatedFacts"]


@final
class ValidatedFacts(Mapping[str, Any]):
    """A facts document that one :class:`FactsValidator` parsed strictly and found valid, read-only.

    The validator that made it (:meth:`FactsValidator.parse_valid`, its only maker) takes
    it back as the document it is, neither parsed nor validated again, so a caller that
    must read the document before evaluating it (a population run reads each patient's
    id) parses each line once. Any other validator judges it afresh, as any Mapping.

    That trust holds because nobody can make one or change one: the constructor refuses
    every caller, there are no subclasses, its attributes cannot be set, and each member
    read through it is a deep read-only view (:func:`~neurocds.facts.readonly.freeze`:
    objects are mapping proxies, arrays tuples), never the validated document's own
    containers. :meth:`to_dict` is a plain copy for a caller that wants one to change.
    """

    __slots__ = ("_document", "_validator")
    _document: dict[str, Any]
    _validator: FactsValidator

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a ValidatedFacts is made only by FactsValidator.parse_valid, which validates it")

    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("ValidatedFacts cannot be subclassed: its validator trusts it as it is")

    @classmethod
    def _vouched(cls, document: dict[str, Any], validator: FactsValidator) -> ValidatedFacts:
        """The one way in, for :meth:`FactsValidator.parse_valid`: ``document`` is valid and referenced nowhere else."""
        made = object.__new__(cls)
        object.__setattr__(made, "_document", document)
        object.__setattr__(made, "_validator", validator)
        return made

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ValidatedFacts is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ValidatedFacts is read-only: cannot delete {name!r}")

    def __getitem__(self, key: str) -> Any:
        return freeze(self._document[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._document)

    def __len__(self) -> int:
        return len(self._document)

    def __contains__(self, key: object) -> bool:
        return key in self._document

    def __eq__(self, other: object) -> bool:
        # Equal to the same document as dicts and lists (the views' tuples are not lists).
        if type(other) is ValidatedFacts:
            return self._document == other._document
        return isinstance(other, Mapping) and self._document == plain_copy(other)

    __hash__ = None  # type: ignore[assignment]  # a Mapping: equal to dicts, so not hashable

    def __repr__(self) -> str:
        return f"ValidatedFacts({self._document!r})"

    def __copy__(self) -> ValidatedFacts:
        return self  # immutable: a copy would be the same document

    def __deepcopy__(self, memo: dict[int, Any]) -> ValidatedFacts:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Elsewhere (another process) no validator has vouched for it: it travels as a
        # plain dict, which any validator there judges afresh.
        return (dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """A plain deep copy (dicts and lists) of the document, the caller's to change."""
        plain: dict[str, Any] = plain_copy(self._document)
        return plain
