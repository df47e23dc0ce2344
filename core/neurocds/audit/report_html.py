"""What the audit's HTML reports (one decision: render.py; a period: period.py) share.

Every value from a record is escaped, and a record's text never picks a CSS class.
"""

from __future__ import annotations

from html import escape
from typing import Any

URGENCIES = ("emergency", "urgent", "routine", "info", "none")  # highest first: each has a badge class

# What both HTML reports (one decision in render.py, a period in period.py) style alike; each adds its own.
REPORT_CSS = """
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:1.6rem;border-bottom:1px solid #ccc}
td,th{text-align:left;padding:.2rem .8rem .2rem 0;vertical-align:top}
.u{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-weight:600;font-size:.85rem}
.u-emergency{background:#b00020;color:#fff}.u-urgent{background:#e65100;color:#fff}
.u-routine{background:#1565c0;color:#fff}.u-info,.u-none{background:#ddd}
code{background:#f4f4f4;padding:0 .2rem}.ok{color:#1b5e20;font-weight:600}.bad{color:#b00020;font-weight:600}
.muted{color:#666}.disclaimer{margin-top:2rem;font-style:italic}
"""


def escape_html(value: Any) -> str:
    """``value`` as HTML text (quotes too, for attributes); ``None`` shows as nothing, not "None"."""
    return escape("" if value is None else str(value), quote=True)


def urgency_badge(urgency: Any) -> str:
    """A coloured urgency label; a value outside :data:`URGENCIES` gets the plain ``none`` class,
    so a record's text never chooses a class name."""
    name = str(urgency or "none")
    cls = name if name in URGENCIES else "none"
    return f'<span class="u u-{cls}">{escape_html(name.upper())}</span>'
