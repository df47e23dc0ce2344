"""The rule-pack author's kit: case files, the pytest plugin, lint, coverage, scaffold, pack sheets.

Everything a pack author needs to write, test and document a pack, installed with
neurocds (the built-in packs use it for their own case library):

- :mod:`~neurocds.authoring.cases` reads ``*.case.yaml`` files and checks one case
  against an :class:`~neurocds.engine.Engine`, with a readable expected-vs-actual table;
- :mod:`~neurocds.authoring.pytest_plugin` collects those files as pytest items
  (``pytest11`` entry point ``neurocds``; ``-p no:neurocds`` turns it off);
- :mod:`~neurocds.authoring.coverage` measures rule and condition coverage from the
  reference evaluator's node states and writes JSON, LCOV, Cobertura and HTML;
- :mod:`~neurocds.authoring.lint` checks rule files against the facts schema and each other;
- :mod:`~neurocds.authoring.scaffold` writes a new pack distribution;
- :mod:`~neurocds.authoring.sheet` computes the DSI source-attribute sheet;
- :mod:`~neurocds.authoring.metadata` reads ``pack.yaml`` (version, dates, developer, funding).

It sits above the engine (it evaluates with it) and below the CLI.

May import: the engine layer (``neurocds.engine``, ``neurocds.result``, ``neurocds.testing``,
``neurocds``) and everything below it.
"""
