"""The neurocds pytest plugin: every case file becomes test items, with optional rule coverage.

Registered through the ``pytest11`` entry point ``neurocds``, so any project with
neurocds installed has it; ``-p no:neurocds`` turns it off. It collects
``*.case.yaml`` and every file matching the ``neurocds_case_globs`` ini patterns
(relative to the rootdir), one item per case (matrix cases expand into several).

Options (command line, or the ini key in brackets):

- ``--neurocds-packs=a,b`` [``neurocds_packs``]: the packs the cases run against
  (their dependencies must be listed too); default: every installed pack. Pin them,
  so that installing another pack cannot change your suite's answers.
- ``--neurocds-allow-empty`` [``neurocds_allow_empty``]: a full run (no paths on the
  command line) of a pack project that collected no case fails unless this is set.
- ``--neurocds-coverage=json,lcov,cobertura,html`` and ``--neurocds-coverage-dir``:
  write rule coverage reports; ``--neurocds-coverage-fail-under=PCT``
  [``neurocds_coverage_fail_under``]: fail the run below that condition coverage.
- ``--neurocds-cover=a,b`` [``neurocds_cover``]: the packs coverage is measured for
  (default: those of ``--neurocds-packs``, or all).
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from neurocds.engine import Engine
from neurocds.errors import NeurocdsError

from .cases import CASE_SUFFIX, Case, CaseFileError, Outcome, check_case, load_case_file
from .coverage import CoverageCollector
from .coverage_reports import FILE_NAMES, FORMATS, write_reports
from .metadata import read_metadata

STATE_KEY = pytest.StashKey["_Session"]()


# (command-line flag or None, ini key or None, ini type, help): the guide's option table is this list.
IniType = Literal["string", "linelist", "bool"]
OPTIONS: tuple[tuple[str | None, str | None, IniType, str], ...] = (
    (
        "--neurocds-packs",
        "neurocds_packs",
        "string",
        "comma-separated packs the cases run against (list dependencies too)",
    ),
    (None, "neurocds_case_globs", "linelist", "extra case-file patterns, relative to the rootdir"),
    ("--neurocds-allow-empty", "neurocds_allow_empty", "bool", "allow a full run of a pack project to collect no case"),
    ("--neurocds-coverage", None, "string", f"write coverage reports: comma-separated of {','.join(FORMATS)}"),
    ("--neurocds-coverage-dir", None, "string", "folder for the coverage reports (default neurocds-coverage)"),
    (
        "--neurocds-coverage-fail-under",
        "neurocds_coverage_fail_under",
        "string",
        "fail below this condition coverage %",
    ),
    ("--neurocds-cover", "neurocds_cover", "string", "comma-separated packs to measure (default: --neurocds-packs)"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("neurocds", "neurocds rule-pack case files")
    for flag, ini, kind, text in OPTIONS:
        if flag is not None:
            extra: dict[str, Any] = {"action": "store_true", "default": None} if kind == "bool" else {"default": None}
            if flag == "--neurocds-coverage-dir":
                extra["default"] = "neurocds-coverage"
            if flag == "--neurocds-coverage-fail-under":
                extra["type"] = float
            group.addoption(flag, help=text.replace("%", "%%"), **extra)
        if ini is not None:
            default: Any = False if kind == "bool" else ([] if kind == "linelist" else "")
            parser.addini(ini, text, type=kind, default=default)


def _names(value: str | None) -> list[str] | None:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    return names or None


class _Session:
    """Per-run state: one engine for every case, the coverage tally, how many case files were collected."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.packs = _names(config.getoption("neurocds_packs") or config.getini("neurocds_packs"))
        self.cover = _names(config.getoption("neurocds_cover") or config.getini("neurocds_cover")) or self.packs
        formats = _names(config.getoption("neurocds_coverage")) or []
        bad = sorted(set(formats) - set(FORMATS))
        if bad:
            raise pytest.UsageError(f"--neurocds-coverage: unknown format(s) {bad}; choose from {','.join(FORMATS)}")
        self.formats = tuple(formats)
        under = config.getoption("neurocds_coverage_fail_under")
        # The ini bar is the project's bar for its whole suite: a run of named files or nodes
        # is not held to it (the command-line option always applies).
        narrowed = config.args_source == pytest.Config.ArgsSource.ARGS
        if under is None and str(config.getini("neurocds_coverage_fail_under")).strip() and not narrowed:
            under = float(config.getini("neurocds_coverage_fail_under"))
        self.fail_under: float | None = under
        self.globs = [str(g) for g in config.getini("neurocds_case_globs")]
        self.collected = 0
        self._engine: Engine | None = None
        self._error: str | None = None
        self.coverage: CoverageCollector | None = None
        self.report: dict[str, Any] | None = None
        self._declared: dict[str, list[str]] | None = None
        self.deselected = 0  # case items left out by -k/-m: a partial run cannot be held to the coverage bar

    @property
    def measuring(self) -> bool:
        return bool(self.formats) or self.fail_under is not None

    def engine(self) -> Engine:
        if self._error is not None:
            raise CaseError(self._error)
        if self._engine is None:
            try:
                self._engine = Engine(packs=self.packs)
            except NeurocdsError as exc:
                self._error = f"cannot load the packs under test: {exc}"
                raise CaseError(self._error) from exc
            if self.measuring:
                self.coverage = CoverageCollector(self._engine, self.cover)
        return self._engine

    def declared_reads(self) -> dict[str, list[str]]:
        """Computed fact -> the paths the loaded packs' pack.yaml declare their compute hooks read."""
        if self._declared is None:
            self._declared = {}
            for pack in self.engine().packs:
                self._declared.update(read_metadata(pack).computed_reads())
        return self._declared

    def is_case_file(self, path: Path) -> bool:
        if path.name.endswith(CASE_SUFFIX):
            return True
        try:
            relative = path.relative_to(self.config.rootpath).as_posix()
        except ValueError:
            return False
        return any(fnmatch.fnmatch(relative, pattern) for pattern in self.globs)


class CaseError(Exception):
    """A case that cannot be run (its packs do not load); shown as its message alone."""


class CaseFailed(AssertionError):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.report())
        self.outcome = outcome


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE_KEY] = _Session(config)
    config.addinivalue_line("markers", "neurocds_case: a case from a neurocds case file")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash[STATE_KEY]
    if file_path.suffix in (".yaml", ".yml") and state.is_case_file(file_path):
        state.collected += 1  # a file, even one that fails to load: the folder was not lost
        return CaseFile.from_parent(parent, path=file_path)
    return None


class CaseFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        try:
            cases = load_case_file(self.path)
        except CaseFileError as exc:
            raise self.CollectError(str(exc)) from exc
        for case in cases:
            item = CaseItem.from_parent(self, name=case.id, case=case)
            item.add_marker("neurocds_case")
            yield item


class CaseItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        state = self.config.stash[STATE_KEY]
        engine = state.engine()
        known = {rule.key for rule in engine.rules if rule.kind == "finding"}
        outcome = check_case(self.case, engine, known, state.declared_reads())
        if state.coverage is not None:
            state.coverage.record_facts(self.case.facts)
        if not outcome.passed:
            raise CaseFailed(outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed | CaseError | NeurocdsError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"case {self.case.id}"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE_KEY]
    if state.collected or _allow_empty(config):
        return
    if config.args_source != pytest.Config.ArgsSource.ARGS and (state.packs or _declares_pack(config.rootpath)):
        raise pytest.UsageError(
            "neurocds: no case file collected (name them *.case.yaml or set neurocds_case_globs); "
            "pass --neurocds-allow-empty (ini neurocds_allow_empty = true) if that is intended"
        )


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, CaseItem):
            item.config.stash[STATE_KEY].deselected += 1


def _allow_empty(config: pytest.Config) -> bool:
    return bool(config.getoption("neurocds_allow_empty") or config.getini("neurocds_allow_empty"))


def _declares_pack(root: Path) -> bool:
    """Whether the project at ``root`` is a pack distribution (declares a neurocds.packs entry point)."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return "neurocds.packs" in project.get("entry-points", {})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash[STATE_KEY]
    if state.coverage is None or state.coverage.cases == 0:
        return
    state.report = state.coverage.to_dict()
    if state.formats:
        write_reports(
            state.report, Path(state.config.getoption("neurocds_coverage_dir")), state.formats, session.config.rootpath
        )
    percent = state.report["totals"]["conditions"]["percent"]
    gated = state.fail_under is not None and not state.deselected
    if gated and percent < state.fail_under and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE_KEY]
    report = state.report
    if report is None:
        return
    write = terminalreporter.write_line
    terminalreporter.section("neurocds rule coverage")
    write(f"{'pack':<28} {'conditions':>18} {'rule outcomes':>18} {'any/all branches':>18}")
    rows = [*report["packs"].items(), ("TOTAL", report["totals"])]
    for name, totals in rows:
        cells = [f"{t['percent']:6.2f}% {t['covered']:>4}/{t['total']:<4}" for t in totals.values()]
        write(f"{name:<28} " + " ".join(f"{c:>18}" for c in cells))
    for fmt in state.formats:
        write(f"coverage {fmt}: {Path(config.getoption('neurocds_coverage_dir')) / FILE_NAMES[fmt]}")
    if state.fail_under is not None and state.deselected:
        write(
            f"coverage bar not applied: {state.deselected} case(s) deselected, so this run covers less than the suite"
        )
    elif state.fail_under is not None:
        percent = report["totals"]["conditions"]["percent"]
        verdict = "FAIL" if percent < state.fail_under else "ok"
        write(f"condition coverage {percent}% (required {state.fail_under}%): {verdict}", red=verdict == "FAIL")
