"""Where a rule and each node of its condition sit in its rule file: JSON pointers and line numbers.

The rule builder turns ``all``/``any``/``not`` lists into condition nodes in order,
so walking a rule's condition tree beside its raw ``when`` gives every node the
pointer of the YAML (or JSON) text it came from; composing the file with PyYAML
(JSON is YAML) gives that text's line. Coverage reports and lint findings use both.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import yaml

from neurocds.rules.conditions import All, AnyOf, Condition, Not
from neurocds.rules.ruleset import Rule


def node_pointers(rule: Rule) -> Iterator[tuple[Condition, str]]:
    """Every node of the rule's condition with its JSON pointer in the rule file, parents first."""

    def walk(node: Condition, pointer: str) -> Iterator[tuple[Condition, str]]:
        yield node, pointer
        if isinstance(node, All | AnyOf):
            word = "all" if isinstance(node, All) else "any"
            for i, child in enumerate(node.items):
                yield from walk(child, f"{pointer}/{word}/{i}")
        elif isinstance(node, Not):
            yield from walk(node.item, f"{pointer}/not")

    yield from walk(rule.when, f"{rule.pointer}/when")


# libyaml's composer where PyYAML has it: composing is most of what lint spends per file.
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=64)
def _composed(path: str, mtime_ns: int) -> yaml.Node | None:
    try:
        return yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def line_of(file: str, pointer: str) -> int:
    """1-based line of the value at ``pointer`` in ``file`` (of its deepest existing parent if absent)."""
    try:
        node = _composed(file, Path(file).stat().st_mtime_ns)
    except OSError:
        return 1
    if node is None:
        return 1
    for part in pointer.split("/")[1:]:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
        if child is None:
            break
        node = child
    return int(node.start_mark.line) + 1


def rule_line(rule: Rule) -> int:
    """The line of the rule's ``id``."""
    return line_of(rule.file, f"{rule.pointer}/id")
