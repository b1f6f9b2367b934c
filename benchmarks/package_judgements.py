"""Package a judgement file beside the bundled questions, with each judged answer's text.

    python benchmarks/package_judgements.py STORE_DIR JUDGEMENTS.jsonl

Reads the judgements (one-line errors for a bad file), keeps those that match an answer of the
store by question id and answer hash (the others are listed and left out), adds the stored
answer text as ``answer`` and writes them in the store's question order to
``extraction/data/judgements/<model>_<dataset>.jsonl``, the file ``--data.labels judged`` and
``benchmarks/judged_agreement.py`` read. The answer text lets tests re-measure label agreement
without the store.
"""

from __future__ import annotations

from common import set_thread_policy

set_thread_policy()  # before torch loads (common/threads.py)

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from extraction.store import TraceStore
from extraction.store.judgements import PACKAGED_DIR, match_judgements, read_judgements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="the trace store whose answers were judged")
    parser.add_argument("judgements", help="the judgement JSONL file")
    args = parser.parse_args(argv)
    store = TraceStore(args.store)
    judgements = read_judgements(args.judgements)
    match = match_judgements(store.rows, judgements)
    for line in match.report():
        print(line)
    by_id = {j.question_id: j for j in judgements if j.question_id in match.labels}
    settings = store.manifest.settings
    out = PACKAGED_DIR / f"{settings.model}_{settings.dataset}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for qid in store.question_ids:
            if qid in by_id:
                row = asdict(by_id[qid]) | {"answer": store.rows[qid].generated_answer_clean}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(by_id)} judgements to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
