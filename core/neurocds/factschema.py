"""The facts schema an engine validates against: the base schema with each pack's extension.

Split from :mod:`neurocds.engine`, whose loader calls :func:`compose_validator` once per
engine. The meta-schema check of the composed schema is the costly part of building the
validator; its verdict depends on nothing but the composed schema itself (the Draft
2020-12 meta-schema being a fixed document), so the load cache remembers it per exact
schema and neurocds version.

May import: base modules, facts, rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from neurocds.errors import PackLoadError
from neurocds.facts.strictjson import ParseLimits, canonical_json
from neurocds.facts.validation import FactsValidator, check_extension
from neurocds.resources import load_schema
from neurocds.rules.cache import LoadCache
from neurocds.rules.packs import LoadedPack


def compose_validator(
    ordered: Sequence[LoadedPack],
    problems: Mapping[str, PackLoadError],
    limits: ParseLimits,
    cache: LoadCache,
) -> tuple[FactsValidator, str, LoadCache, dict[str, PackLoadError]]:
    """The validator over the base schema and the loadable packs' extensions.

    Returns the validator, the key that names the composed schema (the compile checks are
    cached under it), the cache to use from here on (a disabled one when no key can vouch
    for the schema), and ``problems`` with the packs whose extension was refused added.
    """
    problems = dict(problems)
    base = load_schema("facts.schema.json")
    extensions: dict[str, Any] = {}
    for pack in ordered:
        if pack.record.facts_schema and pack.name not in problems:
            try:
                extensions[pack.name] = check_extension(pack.name, pack.record.facts_schema)
            except PackLoadError as exc:
                problems[pack.name] = exc
    try:
        checked_key = LoadCache.key(b"facts-schema", canonical_json(base), canonical_json(extensions))
    except (TypeError, ValueError):  # a schema JSON cannot carry: no key can vouch for it
        checked_key, cache = "", LoadCache(None)
    checked = cache.get("schemas", checked_key) is not None
    validator = FactsValidator(base, extensions, limits, schema_checked=checked)
    if not checked:
        cache.put("schemas", checked_key, {"checked": True})
    return validator, checked_key, cache, problems
