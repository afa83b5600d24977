"""A long-document task for length checks: the bundled demo's queries over documents of 1 to 400 passages.

BRIGHT's ``long_documents`` and web-page corpora give rank1 prompts far beyond MS MARCO's ~80-token passages;
no such data ships here, so this builds a BEIR-layout folder whose documents concatenate the demo's passages
(a deterministic, log-uniform number of them per document: ~100 to ~30,000 tokens), keeping each query's top-20
of the demo run as candidates and the demo's qrels. It is for the length rules (``--dry-run`` counts the
passages each rule cuts) and for length-heavy smoke runs, not for metrics.

    python benchmarks/make_long_docs.py /tmp/long-docs
    rank1-eval run --task /tmp/long-docs --run-file /tmp/long-docs/run.trec --model M --dry-run
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"


def build(out: Path, max_passages: int = 400, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    passages = [json.loads(line) for line in (DEMO / "corpus.jsonl").open(encoding="utf-8")]
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    (out / "queries.jsonl").write_text((DEMO / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (out / "qrels" / "test.tsv").write_text((DEMO / "qrels" / "test.tsv").read_text(encoding="utf-8"))
    by_id = {p["_id"]: p for p in passages}
    sizes = []
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for p in passages:  # each document keeps its id and opens with its own passage, then more of the corpus
            n = max(1, round(math.exp(rng.uniform(0, math.log(max_passages)))))
            extra = rng.sample(passages, min(n - 1, len(passages)))
            text = " ".join([by_id[p["_id"]]["text"], *(e["text"] for e in extra)])
            sizes.append(n)
            f.write(json.dumps({"_id": p["_id"], "title": "", "text": text}, ensure_ascii=False) + "\n")
    (out / "run.trec").write_text((DEMO / "bm25s_top20.trec").read_text())
    return {"documents": len(sizes), "passages_max": max(sizes), "passages_median": sorted(sizes)[len(sizes) // 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-passages", type=int, default=400)
    args = parser.parse_args()
    print(json.dumps(build(args.out, args.max_passages)))


if __name__ == "__main__":
    main()
