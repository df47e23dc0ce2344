"""`audit report --since --until --html`: many decisions on one page, checked in a real headless browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from audit_helpers import make_facts, make_result
from click.testing import CliRunner

from neurocds.audit import AuditLog
from neurocds.audit.period import render_period_html, summarise
from neurocds.audit.records import utc_now
from neurocds.audit.verify_report import VerifyReport
from neurocds.cli import main

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    root = tmp_path_factory.mktemp("period")
    d = root / "log"
    log = AuditLog(d)
    log.record_decision(make_result(urgency="routine"), make_facts())  # before the period
    since = utc_now()
    ids = []
    for urgency, complete in (("emergency", True), ("emergency", True), ("urgent", False)):
        result = make_result(urgency=urgency, complete=complete)
        if not complete:
            result["errors"] = [{"kind": "pack_load", "pack": "neuromuscular", "message": "import failed"}]
        log.record_decision(result, make_facts())
        ids.append(result["evaluation_id"])
    log.record_cards(ids[0], ["card-1"])
    log.record_feedback("card-1", "overridden", decision_id=ids[0],
                        override_reason={"code": "not-relevant", "display": "Not relevant to this patient",
                                         "userComment": "seen by neurology <today>"})  # fmt: skip
    until = utc_now()
    log.record_decision(make_result(urgency="info"), make_facts())  # after it
    out = root / "period.html"
    result = CliRunner().invoke(main, ["audit", "report", "--audit-dir", str(d), "--since", since,
                                       "--until", until, "--html", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, out.read_text(encoding="utf-8"), ids


def test_the_page_counts_what_an_auditor_reviews(page: tuple[Path, str, list[str]]) -> None:
    _, html, ids = page
    assert "3 decisions, 0 rejected inputs" in html
    assert '<span class="u u-emergency">EMERGENCY</span></td><td>2</td>' in html
    assert "<code>spinal.cauda_equina</code></td><td>Possible cauda equina syndrome</td><td>3</td>" in html
    assert "Not relevant to this patient" in html and "seen by neurology &lt;today&gt;" in html  # escaped
    assert "Incomplete decisions (1)" in html and "pack_load: neuromuscular/- (import failed)" in html
    assert "spinal-compression 2.1.0" in html and "Chain intact" in html
    for decision_id in ids:
        assert (f"id='d-{decision_id}'" in html and f"href='#d-{decision_id}'" in html) or decision_id != ids[0]
    assert "ROUTINE" not in html and "INFO" not in html  # outside the period


def test_a_damaged_log_makes_the_period_report_say_so_and_exit_1(tmp_path: Path) -> None:
    d = tmp_path / "log"
    AuditLog(d).record_decision(make_result(), make_facts())
    data = bytearray((d / "audit.jsonl").read_bytes())
    data[30] ^= 1
    (d / "audit.jsonl").write_bytes(bytes(data))
    out = tmp_path / "p.html"
    result = CliRunner().invoke(main, ["audit", "report", "--audit-dir", str(d), "--html", str(out)])
    assert result.exit_code == 1 and "FAILS verification" in out.read_text(encoding="utf-8")


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (Debian: apt-get install chromium)")
def test_the_page_renders_in_a_real_browser(page: tuple[Path, str, list[str]], tmp_path: Path) -> None:
    path, _, ids = page
    base = [str(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*base, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The browser parsed the page into the tables and anchors (no script is needed for any of it).
    assert dom.stdout.count("<h2>") == 7 and f'id="d-{ids[2]}"' in dom.stdout
    shot = tmp_path / "period.png"
    run = subprocess.run([*base, "--window-size=1200,1800", f"--screenshot={shot}", path.as_uri()],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]


def test_a_record_s_odd_values_neither_pick_a_css_class_nor_show_as_none() -> None:
    # The one-decision report's escaping and badge (audit/report_html.py): the period page
    # used to have weaker copies that put a record's urgency into the class attribute.
    odd = "x u-emergency' onmouseover='alert(1)"
    records = [
        {"type": "decision", "sequence": 1, "decision": {"decision_id": "d1", "highest_urgency": odd}},
        {"type": "decision", "sequence": 2, "decision": {"decision_id": "d2", "highest_urgency": None}},
    ]
    html = render_period_html(summarise(records, None, None), VerifyReport(directory="log"))
    assert '<span class="u u-none">X U-EMERGENCY&#x27; ONMOUSEOVER=&#x27;ALERT(1)</span>' in html
    assert '<span class="u u-none">NONE</span>' in html  # no urgency recorded: the plain badge
    assert "<td>None</td>" not in html and "u-None" not in html  # the missing recorded_at is left blank
