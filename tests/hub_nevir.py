"""A tiny copy of ``orionweller/NevIR-mteb`` laid out as mteb 2.26.24's loader reads the Hub repo.

One parquet file per config (``corpus``, ``queries``, ``default`` = qrels, ``top_ranked``), split ``test``, and a
README.md whose YAML front matter declares them — what ``datasets.load_dataset(<folder>, <config>)`` reads, so
``rank1-eval run --task NevIR --dataset-path <folder>`` runs mteb's own NevIR class offline. Pairs ``<n>_q1`` /
``<n>_q2`` share two passages that differ by a negation, as in NevIR; the texts are made up for the test.
"""

from __future__ import annotations

from pathlib import Path

PAIRS = [
    (
        "The museum opens on Mondays.",
        "The museum does not open on Mondays.",
        "Which museum is open on Mondays?",
        "Which museum is closed on Mondays?",
    ),
    (
        "The drug was approved for children.",
        "The drug was not approved for children.",
        "Which drug can children take?",
        "Which drug is not for children?",
    ),
]


def build(root: Path) -> Path:
    """Write the copy under ``root`` and return its folder (pass it as ``--dataset-path``)."""
    from datasets import Dataset

    folder = root / "NevIR-mteb"
    corpus, queries, qrels, top = [], [], [], []
    for n, (doc1, doc2, q1, q2) in enumerate(PAIRS):
        d1, d2 = f"{n}_doc1", f"{n}_doc2"
        corpus += [{"_id": d1, "title": f"Pair {n}", "text": doc1}, {"_id": d2, "title": "", "text": doc2}]
        queries += [{"_id": f"{n}_q1", "text": q1}, {"_id": f"{n}_q2", "text": q2}]
        qrels += [
            {"query-id": f"{n}_q1", "corpus-id": d1, "score": 1},
            {"query-id": f"{n}_q2", "corpus-id": d2, "score": 1},
        ]
        top += [{"query-id": f"{n}_q1", "corpus-ids": [d1, d2]}, {"query-id": f"{n}_q2", "corpus-ids": [d1, d2]}]
    configs = {"corpus": corpus, "queries": queries, "default": qrels, "top_ranked": top}
    lines = ["---", "configs:"]
    for name, rows in configs.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows).to_parquet(str(folder / name / "test.parquet"))
        lines += [f"- config_name: {name}", "  data_files:", "  - split: test", f"    path: {name}/test.parquet"]
    (folder / "README.md").write_text("\n".join([*lines, "---", "", "Test copy of NevIR-mteb.", ""]), encoding="utf-8")
    return folder
