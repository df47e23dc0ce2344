"""Rewrite tests/corpus/answers.json (see tests/answer_corpus.py for when that is allowed).

    python tests/corpus/regenerate.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from answer_corpus import CORPUS, compute, load, pack_identities

from neurocds import Engine


def main() -> int:
    engine = Engine(packs=None)
    packs = pack_identities(engine)
    answers = compute(engine)
    if CORPUS.exists():
        stored = load()
        changed = [
            (v["label"], stored["answers"][k]["findings"], v["findings"])
            for k, v in answers.items()
            if k in stored["answers"] and stored["answers"][k]["answer_sha256"] != v["answer_sha256"]
        ]
        old = {n: p["version"] for n, p in stored["packs"].items()}
        moved = {n: (old.get(n), p["version"]) for n, p in packs.items() if old.get(n) != p["version"]}
        if changed and not moved:
            print(f"refused: {len(changed)} stored answers would change but no pack's version did:", file=sys.stderr)
            for label, before, after in changed[:20]:
                print(f"  {label}: {before} -> {after}", file=sys.stderr)
            print("bump the version of the pack whose rules changed, then run this again", file=sys.stderr)
            return 1
        for name, (before, after) in sorted(moved.items()):
            print(f"pack {name}: {before} -> {after}")
        print(f"{len(changed)} answers changed with the pack versions")
    CORPUS.write_text(json.dumps({"packs": packs, "answers": answers}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(answers)} answers to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
