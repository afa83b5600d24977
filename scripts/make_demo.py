"""Build the bundled demo task: 10 judged TREC DL 2019 queries, their bm25s top-20 and judged passages.

Source: shared/data/trec-dl19-subset (MS MARCO passages, TREC DL 2019 judgements). BM25 runs over the whole
5,000-passage subset; the demo corpus keeps every passage that is a top-20 candidate or judged for the kept
queries, so nDCG on the demo equals nDCG on the subset for those queries.

    python scripts/make_demo.py ../shared/data/trec-dl19-subset rank1_eval/data/run_files/demo/dl19-mini
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rank1_eval.beir import load_beir_folder
from rank1_eval.runs import bm25_run, write_trec

N_QUERIES, TOP_K = 10, 20

ATTRIBUTION = """# dl19-mini: the bundled demo task

10 judged queries of the TREC Deep Learning 2019 passage task (the first 10 by query id among the judged ones),
their bm25s top-{k} over `shared/data/trec-dl19-subset` (`bm25s_top{k}.trec`), and every passage that is a
candidate or judged for them (`corpus.jsonl`), with their TREC DL 2019 judgements (`qrels/test.tsv`, no header,
grades 1-3). Built by `python scripts/make_demo.py`.

Terms: MS MARCO data is provided by Microsoft for non-commercial research purposes. The TREC DL 2019
judgements come from NIST's TREC Deep Learning track. Keep this attribution with any copy or subset.
"""


def main(src: str, dst: str) -> None:
    data = load_beir_folder(src, split="test")
    qids = sorted(q for q in data.queries if data.qrels.get(q))[:N_QUERIES]
    docs = {d: data.doc_text(d) for d in data.corpus}
    run = bm25_run(docs, {q: data.queries[q] for q in qids}, k=TOP_K)
    keep = {d for q in qids for d in run[q]} | {d for q in qids for d in data.qrels[q]}
    out = Path(dst)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for d in sorted(keep):
            doc = data.corpus[d]
            row = {"_id": d, "title": doc.get("title", ""), "text": doc["text"]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in qids:
            f.write(json.dumps({"_id": q, "text": data.queries[q]}, ensure_ascii=False) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        for q in qids:
            for d, rel in sorted(data.qrels[q].items()):
                f.write(f"{q}\t{d}\t{rel}\n")
    write_trec(run, out / f"bm25s_top{TOP_K}.trec", tag="bm25s")
    (out / "README.md").write_text(ATTRIBUTION.format(k=TOP_K), encoding="utf-8")
    print(f"{len(qids)} queries, {len(keep)} passages, {sum(len(v) for v in run.values())} pairs -> {out}")


if __name__ == "__main__":
    main(*(sys.argv[1:] or ["../shared/data/trec-dl19-subset", "rank1_eval/data/run_files/demo/dl19-mini"]))
