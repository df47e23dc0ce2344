"""The neurocds pytest plugin, run on case files in a temporary project (pytester, in process)."""

from __future__ import annotations

import json
from xml.etree import ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

PACKS = "weakness-pattern,spinal-compression"
CES = "spinal.cauda_equina_syndrome_suspected"
INI = f"[pytest]\nneurocds_packs = {PACKS}\n"

FIRES = f"""
facts: {{facts_version: "1", patient: {{id: p}}, symptoms: {{back_pain: true, saddle_anaesthesia: true}}}}
expect_present: [{CES}]
expect_urgency: {{{CES}: emergency}}
expect_highest_urgency: emergency
"""
SEVERAL = f"""
cases:
  - name: decided-false
    facts: {{facts_version: "1", patient: {{id: p}}, strength: {{left_leg: 5, right_leg: 5}},
             imaging: {{spine_mri: normal}}, symptoms: {{back_pain: false, radicular_leg_pain: false}}}}
    expect_absent: [{CES}]
  - name: waits
    facts: {{facts_version: "1", patient: {{id: p}}, symptoms: {{back_pain: true}}}}
    matrix: {{symptoms.saddle_anaesthesia: [false, null]}}
    expect_undecided: [{CES}]
    expect_missing: [/symptoms/urinary_retention]
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


def test_case_files_become_one_item_per_case_with_readable_matrix_ids(project: pytest.Pytester) -> None:
    project.makefile(".case.yaml", fires=FIRES, several=SEVERAL)
    result = project.runpytest("--collect-only", "-q")
    ids = {line.split("::", 1)[1] for line in result.outlines if "::" in line}
    assert ids == {
        "fires",
        "decided-false",
        "waits[symptoms.saddle_anaesthesia=false]",
        "waits[symptoms.saddle_anaesthesia=not-recorded]",
    }


def test_cases_pass_and_three_valued_expectations_are_checked(project: pytest.Pytester) -> None:
    project.makefile(".case.yaml", fires=FIRES, several=SEVERAL)
    project.runpytest().assert_outcomes(passed=4)
    # The same facts with the finding expected present: undecided is not fired, and the run says so.
    project.makefile(".case.yaml", several=SEVERAL.replace("expect_undecided", "expect_present"))
    result = project.runpytest("-k", "waits")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([f"✗ finding {CES}*fired*undecided*"])


def test_a_failure_prints_the_table_and_why_the_finding_did_not_fire(project: pytest.Pytester) -> None:
    wrong = f"""
facts: {{facts_version: "1", patient: {{id: p}}, strength: {{left_leg: 5, right_leg: 5}},
         symptoms: {{back_pain: false, radicular_leg_pain: false, saddle_anaesthesia: true}}}}
expect_present: [{CES}]
expect_highest_urgency: emergency
"""
    project.makefile(".case.yaml", wrong=wrong)
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"✗ finding {CES}" in out and "fired" in out and "false" in out
    assert "✗ highest urgency" in out
    assert "symptoms.back_pain = true  (read false at /symptoms/back_pain)" in out
    assert "rule spinal.cauda_equina.mri: undecided (0/1 conditions met); not recorded: /imaging/spine_mri" in out
    assert "Traceback" not in out


def test_unknown_finding_id_fails_instead_of_passing_vacuously(project: pytest.Pytester) -> None:
    project.makefile(
        ".case.yaml", typo=FIRES.replace(f"expect_urgency: {{{CES}: emergency}}", "expect_absent: [spinal.typo]")
    )
    result = project.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*finding ids are those of loaded rules*unknown: spinal.typo*"])


def test_a_malformed_case_file_is_a_collection_error_naming_the_key(project: pytest.Pytester) -> None:
    project.makefile(".case.yaml", bad="facts: {facts_version: '1'}\nexpect_presnt: [x]\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*bad.case.yaml: unknown case keys*expect_presnt*"])


def test_p_no_neurocds_turns_the_plugin_off(project: pytest.Pytester) -> None:
    project.makefile(".case.yaml", fires=FIRES)
    result = project.runpytest("-p", "no:neurocds", "--collect-only", "-q")
    assert "fires" not in result.stdout.str()


def test_configured_globs_collect_plain_yaml_files(project: pytest.Pytester) -> None:
    project.makeini(INI + "neurocds_case_globs =\n    cases/*/*.yaml\n")
    (project.path / "cases" / "one").mkdir(parents=True)
    (project.path / "cases" / "one" / "fires.yaml").write_text(FIRES, encoding="utf-8")
    (project.path / "other.yaml").write_text("not: a case\n", encoding="utf-8")
    project.runpytest().assert_outcomes(passed=1)


def test_an_empty_collection_fails_a_pack_project_unless_allowed(project: pytest.Pytester) -> None:
    project.makepyfile(test_nothing="def test_x():\n    pass\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no case file collected*"])
    project.runpytest("--neurocds-allow-empty").assert_outcomes(passed=1)
    # Naming a file on the command line is a narrowed run, not a moved case folder.
    project.runpytest("test_nothing.py").assert_outcomes(passed=1)


def test_a_project_without_neurocds_configuration_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_x():\n    pass\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_coverage_reports_and_fail_under(project: pytest.Pytester) -> None:
    project.makefile(".case.yaml", fires=FIRES)
    args = ["--neurocds-cover=spinal-compression", "--neurocds-coverage=json,lcov,cobertura,html"]
    result = project.runpytest(*args, "--neurocds-coverage-fail-under=99")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # one case covers far less than 99 %
    result.stdout.fnmatch_lines(["*neurocds rule coverage*", "spinal-compression *", "*required 99.0%): FAIL*"])
    report = json.loads((project.path / "neurocds-coverage" / "coverage.json").read_text())
    assert {r["pack"] for r in report["rules"]} == {"spinal-compression"}
    assert report["cases"] == 1 and 0 < report["totals"]["conditions"]["percent"] < 99
    clinical = next(r for r in report["rules"] if r["id"] == "spinal.cauda_equina.clinical")
    assert clinical["outcomes"] == {"fired": 1, "false": 0, "undecided": 0}
    lcov = (project.path / "neurocds-coverage" / "coverage.lcov").read_text()
    assert "FNDA:1,spinal.cauda_equina.clinical" in lcov and "end_of_record" in lcov
    xml = ET.parse(project.path / "neurocds-coverage" / "coverage.xml").getroot()
    assert xml.tag == "coverage" and xml.find("packages/package").get("name") == "spinal-compression"
    assert (project.path / "neurocds-coverage" / "html" / "index.html").is_file()
    low = project.runpytest("--neurocds-cover=spinal-compression", "--neurocds-coverage-fail-under=1")
    assert low.ret == pytest.ExitCode.OK
    # A run narrowed with -k is not held to the bar (it would always fail), and says so.
    project.makefile(".case.yaml", other=FIRES)
    narrowed = project.runpytest("--neurocds-coverage-fail-under=99", "-k", "other")
    assert narrowed.ret == pytest.ExitCode.OK
    narrowed.stdout.fnmatch_lines(["*coverage bar not applied: 1 case(s) deselected*"])


def test_the_packs_option_pins_the_engine(project: pytest.Pytester) -> None:
    project.makefile(".case.yaml", fires=FIRES)
    result = project.runpytest("--neurocds-packs=spinal-compression")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot load the packs under test*weakness-pattern*"])


def test_the_ini_coverage_bar_holds_for_the_whole_suite_not_a_named_file(project: pytest.Pytester) -> None:
    project.makeini(INI + "neurocds_coverage_fail_under = 99\n")
    project.makefile(".case.yaml", fires=FIRES)
    assert project.runpytest().ret == pytest.ExitCode.TESTS_FAILED  # one case covers far less than 99 %
    assert project.runpytest("fires.case.yaml").ret == pytest.ExitCode.OK
