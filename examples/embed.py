"""An EHR integration script: evaluate a folder of facts files, print each patient's findings.

    python examples/embed.py [FOLDER]        (default: the examples/ folder)

It shows the embedding API: one Engine for the whole run (loading packs is the
expensive part), FactsValidationError for bad documents (every problem with its
JSON pointer), and `complete` checked before trusting an empty list.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neurocds import Engine, FactsValidationError


def main(folder: Path) -> int:
    engine = Engine()  # packs from the neurocds.packs entry points (NEUROCDS_PACKS narrows them)
    status = 0
    for path in sorted(folder.glob("*.json")):
        raw = path.read_bytes()
        try:
            result = engine.evaluate(raw)
        except FactsValidationError as exc:
            print(f"{path.name}: REJECTED")
            for violation in exc.violations:
                print(f"    {violation.pointer or '/'}: {violation.message}")
            status = 2
            continue
        patient = json.loads(raw)["patient"]["id"]
        flag = "" if result.complete else "  ** INCOMPLETE: a pack failed, absence of findings means nothing **"
        print(f"{path.name}: patient {patient}: highest urgency {result.highest_urgency}{flag}")
        for finding in result.findings:
            print(f"    [{finding['urgency']:9s}] {finding['id']}: {finding['title']}")
        for item in result.missing_data[:3]:
            print(f"    not recorded ({item['urgency']}): {item['pointer']}")
        if not result.complete:
            status = max(status, 3)
    print(result.to_dict()["disclaimer"] if "result" in locals() else "no facts files found")
    return status


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent))
