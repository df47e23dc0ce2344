"""Load-time check that every derived-fact and finding reference can ever be concluded.

A typo (``{derived: pattern.umn_sign}``) would otherwise load as a rule that can never
fire: the result would say ``complete: true`` and the rule would sit undecided forever.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from neurocds.errors import PackLoadError
from neurocds.rules.ruleset import Rule

Reference = tuple[str, str, Any, str, str]  # kind, name, value, file, JSON pointer


def concluded_key(rule: Rule) -> tuple[str, str, Any]:
    """What a rule concludes, in the form references take: ``("derived"|"finding", name, value)``."""
    return ("derived", rule.key, rule.value) if rule.kind == "derive" else ("finding", rule.key, True)


def check_references(
    pack: str,
    references: Iterable[Reference],
    concluded: set[tuple[str, str, Any]],
    computed_namespaces: Sequence[str],
) -> None:
    """Raise a :class:`PackLoadError` for the first reference nothing loaded can conclude.

    :param concluded: ``(kind, name, value)`` of every rule of the packs loaded so far and this one.
    :param computed_namespaces: namespaces of packs with a compute hook: any derived fact
        there may come from Python, so only its namespace can be checked.
    """
    for kind, name, value, file, pointer in references:
        if (kind, name, value) in concluded:
            continue
        if kind == "derived" and any(name.startswith(ns + ".") for ns in computed_namespaces):
            continue
        known = sorted({n for k, n, _ in concluded if k == kind})
        if name in known:
            values = sorted({repr(v) for k, n, v in concluded if k == kind and n == name})
            message = f"no loaded rule concludes derived fact {name!r} with value {value!r} (only {', '.join(values)})"
        else:
            what = "derived fact" if kind == "derived" else "finding"
            hook = " or compute hook" if kind == "derived" else ""
            message = f"no loaded rule{hook} concludes {what} {name!r}, so this test can never be decided"
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            message += f"; did you mean {close[0]!r}?" if close else " (is the pack that concludes it in depends_on?)"
        raise PackLoadError(message, pack=pack, file=file, pointer=pointer)


def check_detailed_findings(pack: str, declared: Sequence[str] | None, rules: Sequence[Rule]) -> None:
    """Raise a :class:`PackLoadError` for a ``RulePack.detailed_findings`` id none of the pack's rules concludes.

    The detail hook is called only for the declared findings, so a misspelt id would
    silently drop the detail it was meant to add.
    """
    if declared is None:
        return
    own = sorted({rule.key for rule in rules if rule.kind == "finding"})
    for finding in declared:
        if finding not in own:
            close = difflib.get_close_matches(finding, own, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PackLoadError(
                f"RulePack.detailed_findings names {finding!r}, which none of the pack's rules concludes{hint}",
                pack=pack,
            )
