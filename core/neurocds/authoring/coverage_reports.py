"""Coverage reports for CI tools and people: JSON, LCOV, Cobertura XML and an HTML page per rule file.

All are written from the JSON report of :mod:`neurocds.authoring.coverage`, with
rule files as the sources: in LCOV each rule is a function (hit when it fired) and
each condition leaf has one branch per outcome it can have (true, false, unknown);
in Cobertura each leaf line is a branch line whose condition coverage counts those
outcomes. The HTML page marks every leaf line covered, partly covered, uncovered
(never evaluated) or only ever unknown.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

FORMATS = ("json", "lcov", "cobertura", "html")
FILE_NAMES = {"json": "coverage.json", "lcov": "coverage.lcov", "cobertura": "coverage.xml", "html": "html"}


def _by_file(report: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    files: dict[str, list[Mapping[str, Any]]] = {}
    for rule in report["rules"]:
        files.setdefault(rule["file"], []).append(rule)
    return dict(sorted(files.items()))


def line_outcomes(rules: list[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Line -> {hits, outcomes seen, outcomes possible} summed over the leaves on that line."""
    lines: dict[int, dict[str, Any]] = {}
    for rule in rules:
        for cond in rule["conditions"]:
            entry = lines.setdefault(cond["line"], {"hits": 0, "covered": 0, "possible": 0, "seen": set()})
            entry["hits"] += sum(cond["outcomes"].values())
            entry["possible"] += len(cond["possible"])
            entry["covered"] += sum(1 for n in cond["outcomes"].values() if n)
            entry["seen"].update(k for k, n in cond["outcomes"].items() if n)
    return lines


def line_class(entry: Mapping[str, Any]) -> str:
    """covered | partial | uncovered | unknown-only."""
    if entry["hits"] == 0:
        return "uncovered"
    if entry["seen"] == {"unknown"}:
        return "unknown-only"
    return "covered" if entry["covered"] == entry["possible"] else "partial"


def _display(file: str, root: Path | None) -> str:
    if root is None:
        return file
    try:
        return os.path.relpath(file, root)
    except ValueError:
        return file


def to_lcov(report: Mapping[str, Any], root: Path | None = None) -> str:
    out: list[str] = []
    for file, rules in _by_file(report).items():
        out += ["TN:neurocds", f"SF:{_display(file, root)}"]
        for rule in rules:
            out.append(f"FN:{rule['line']},{rule['id']}")
        for rule in rules:
            out.append(f"FNDA:{rule['outcomes']['fired']},{rule['id']}")
        out += [f"FNF:{len(rules)}", f"FNH:{sum(1 for r in rules if r['outcomes']['fired'])}"]
        branches = hit = 0
        for block, cond in enumerate(c for r in rules for c in r["conditions"]):
            evaluated = sum(cond["outcomes"].values()) > 0
            for number, outcome in enumerate(cond["possible"]):
                taken = str(cond["outcomes"][outcome]) if evaluated else "-"
                out.append(f"BRDA:{cond['line']},{block},{number},{taken}")
                branches += 1
                hit += 1 if cond["outcomes"][outcome] else 0
        out += [f"BRF:{branches}", f"BRH:{hit}"]
        lines = line_outcomes(rules)
        for number in sorted(lines):
            out.append(f"DA:{number},{lines[number]['hits']}")
        out += [f"LF:{len(lines)}", f"LH:{sum(1 for e in lines.values() if e['hits'])}", "end_of_record"]
    return "\n".join(out) + "\n"


def _rate(covered: int, total: int) -> str:
    return f"{covered / total:.4f}" if total else "1"


def to_cobertura(report: Mapping[str, Any], root: Path | None = None, timestamp: int = 0) -> str:
    totals = report["totals"]["conditions"]
    files = _by_file(report)
    all_lines = {f: line_outcomes(r) for f, r in files.items()}
    lines_valid = sum(len(v) for v in all_lines.values())
    lines_covered = sum(1 for v in all_lines.values() for e in v.values() if e["hits"])
    top = ET.Element(
        "coverage",
        {
            "line-rate": _rate(lines_covered, lines_valid),
            "branch-rate": _rate(totals["covered"], totals["total"]),
            "lines-covered": str(lines_covered),
            "lines-valid": str(lines_valid),
            "branches-covered": str(totals["covered"]),
            "branches-valid": str(totals["total"]),
            "complexity": "0",
            "version": report["format"],
            "timestamp": str(timestamp),
        },
    )
    ET.SubElement(ET.SubElement(top, "sources"), "source").text = str(root or ".")
    packages = ET.SubElement(top, "packages")
    by_pack: dict[str, list[str]] = {}
    for file, rules in files.items():
        by_pack.setdefault(rules[0]["pack"], []).append(file)
    for pack, pack_files in sorted(by_pack.items()):
        pack_lines = [e for f in pack_files for e in all_lines[f].values()]
        package = ET.SubElement(
            packages,
            "package",
            {
                "name": pack,
                "line-rate": _rate(sum(1 for e in pack_lines if e["hits"]), len(pack_lines)),
                "branch-rate": _rate(sum(e["covered"] for e in pack_lines), sum(e["possible"] for e in pack_lines)),
                "complexity": "0",
            },
        )
        classes = ET.SubElement(package, "classes")
        for file in pack_files:
            lines = all_lines[file]
            klass = ET.SubElement(
                classes,
                "class",
                {
                    "name": Path(file).name,
                    "filename": _display(file, root),
                    "line-rate": _rate(sum(1 for e in lines.values() if e["hits"]), len(lines)),
                    "branch-rate": _rate(
                        sum(e["covered"] for e in lines.values()), sum(e["possible"] for e in lines.values())
                    ),
                    "complexity": "0",
                },
            )
            ET.SubElement(klass, "methods")
            xml_lines = ET.SubElement(klass, "lines")
            for number, entry in sorted(lines.items()):
                pct = round(100 * entry["covered"] / entry["possible"])
                ET.SubElement(
                    xml_lines,
                    "line",
                    {
                        "number": str(number),
                        "hits": str(entry["hits"]),
                        "branch": "true",
                        "condition-coverage": f"{pct}% ({entry['covered']}/{entry['possible']})",
                    },
                )
    ET.indent(top)
    return '<?xml version="1.0" ?>\n' + ET.tostring(top, encoding="unicode") + "\n"


_CSS = """body{font-family:sans-serif;margin:1.5em}pre{font-family:monospace;margin:0}
table{border-collapse:collapse}td{padding:0 .5em;vertical-align:top;white-space:pre;font-family:monospace}
.covered{background:#d4f7d4}.partial{background:#fff3b0}.uncovered{background:#f8d0d0}
.unknown-only{background:#d8e4f8}td.n{color:#777;text-align:right}td.o{color:#444}"""


def to_html_pages(report: Mapping[str, Any], root: Path | None = None) -> dict[str, str]:
    """Page name -> HTML: ``index.html`` and one page per rule file."""
    pages: dict[str, str] = {}
    index_rows = []
    for number, (file, rules) in enumerate(_by_file(report).items()):
        name = f"file{number}-{Path(file).stem}.html"
        lines = line_outcomes(rules)
        try:
            text = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError:
            text = []
        rows = []
        for i, source in enumerate(text, start=1):
            entry = lines.get(i)
            css = line_class(entry) if entry else ""
            seen = ", ".join(sorted(entry["seen"])) if entry else ""
            rows.append(
                f'<tr class="{css}"><td class="n">{i}</td><td>{html.escape(source)}</td>'
                f'<td class="o">{html.escape(seen)}</td></tr>'
            )
        covered = sum(e["covered"] for e in lines.values())
        possible = sum(e["possible"] for e in lines.values())
        title = html.escape(_display(file, root))
        pages[name] = (
            f"<!doctype html><meta charset='utf-8'><title>{title}</title><style>{_CSS}</style>"
            f"<h1>{title}</h1><p>condition outcomes covered: {covered}/{possible}. "
            "<span class='covered'>covered</span> <span class='partial'>partly covered</span> "
            "<span class='uncovered'>never evaluated</span> <span class='unknown-only'>only ever unknown</span></p>"
            f"<table>{''.join(rows)}</table>"
        )
        pct = f"{100 * covered / possible:.1f}%" if possible else "n/a"
        index_rows.append(f"<tr><td><a href='{name}'>{title}</a></td><td>{pct}</td></tr>")
    total = report["totals"]["conditions"]
    pages["index.html"] = (
        f"<!doctype html><meta charset='utf-8'><title>neurocds rule coverage</title><style>{_CSS}</style>"
        f"<h1>Rule coverage</h1><p>{report['cases']} cases; condition coverage {total['percent']}% "
        f"({total['covered']}/{total['total']} outcomes)</p><table>{''.join(index_rows)}</table>"
    )
    return pages


def write_reports(
    report: Mapping[str, Any], directory: Path, formats: tuple[str, ...], root: Path | None = None
) -> list[Path]:
    """Write each format under ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = directory / FILE_NAMES[fmt]
        if fmt == "json":
            target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        elif fmt == "lcov":
            target.write_text(to_lcov(report, root), encoding="utf-8")
        elif fmt == "cobertura":
            target.write_text(to_cobertura(report, root), encoding="utf-8")
        else:
            target.mkdir(exist_ok=True)
            for name, page in to_html_pages(report, root).items():
                (target / name).write_text(page, encoding="utf-8")
        written.append(target)
    return written
