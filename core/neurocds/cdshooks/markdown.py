"""Card text: plain text made inert Markdown, and summaries cut to the CDS Hooks length.

Fact values come from the EHR and pack text is plain text; neither may turn into links
or HTML in the EHR's view, so every piece of text a card shows goes through :func:`md`.
"""

from __future__ import annotations

import re
from typing import Any

SUMMARY_MAX = 139  # the spec: summary "<140 characters"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md(text: Any) -> str:
    """Plain text as inert GitHub-flavoured Markdown (no links, emphasis or HTML)."""
    value = str(text).replace("&", "&amp;").replace("<", "&lt;")
    value = _MD_SPECIAL.sub(r"\\\1", value)
    # Line breaks would let a value start a heading or list of its own.
    return " ".join(value.split())


def truncate(text: str, limit: int = SUMMARY_MAX) -> str:
    """At most ``limit`` characters, cut at a word boundary where one is near, marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"
