"""A depth-first walk of parsed JSON in document order, building each pointer only when reached.

The strict parser's problem walk and the repeated-name walk both report violations in
document order and stop after a bounded number: they share this walk, and each decides
which children of a node to descend into (only those that can hold a problem).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["PointerWalk"]

Node = TypeVar("Node")


class PointerWalk(Generic[Node]):
    """Iterates ``(pointer, node)`` from ``root`` (pointer ``""``), depth first, in order.

    While handling a node the caller may :meth:`descend` into some of its children; the
    walk is iterative (no recursion limit), and a caller that stops early builds no
    pointers for the rest.
    """

    def __init__(self, root: Node) -> None:
        self._frames: list[tuple[Iterator[tuple[str | int, Node]], str]] = [(iter((("", root),)), "")]

    def __iter__(self) -> Iterator[tuple[str, Node]]:
        frames = self._frames
        while frames:
            children, parent = frames[-1]
            step = next(children, None)
            if step is None:
                frames.pop()
                continue
            token, node = step
            yield (f"{parent}/{token}" if frames[1:] else ""), node

    def descend(self, pointer: str, children: Iterable[tuple[str | int, Node]]) -> None:
        """Walk ``children`` (``(pointer token, child)`` in order) of the node at ``pointer`` next."""
        self._frames.append((iter(children), pointer))
