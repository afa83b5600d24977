"""Tests for rank1_eval.beir: BEIR-layout folders, qrels files, and the bundled DL19 subset."""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path

import pytest

from rank1_eval.beir import BeirData, DatasetError, DatasetWarning, load_beir_folder, read_qrels

DL19 = Path("/work/shared/data/trec-dl19-subset")

CORPUS = [
    {"_id": "d1", "title": "Apples", "text": "Apples are red or green."},
    {"_id": "d2", "text": "Bananas are yellow."},
    {"_id": "d3", "title": "", "text": "Cherries are small."},
]
QUERIES = [{"_id": "q1", "text": "apple colour"}, {"_id": "q2", "text": "yellow fruit"}]
QRELS = "q1\td1\t2\nq2\td2\t1\nq2\td3\t0\n"


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def make_folder(
    root: Path,
    *,
    corpus: str | bytes | None = None,
    queries: str | bytes | None = None,
    qrels: str | bytes | None = None,
    split: str = "test",
) -> Path:
    """A BEIR folder with the default tiny fixture; any part can be replaced (or omitted with b"")."""
    folder = root / "ds"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    parts = {
        folder / "corpus.jsonl": _jsonl(CORPUS) if corpus is None else corpus,
        folder / "queries.jsonl": _jsonl(QUERIES) if queries is None else queries,
        folder / "qrels" / f"{split}.tsv": QRELS if qrels is None else qrels,
    }
    for path, content in parts.items():
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def test_load_valid_folder(tmp_path: Path) -> None:
    data = load_beir_folder(make_folder(tmp_path))
    assert isinstance(data, BeirData)
    assert data.corpus["d1"] == {"title": "Apples", "text": "Apples are red or green."}
    assert data.corpus["d2"] == {"title": "", "text": "Bananas are yellow."}  # missing title -> ""
    assert data.queries == {"q1": "apple colour", "q2": "yellow fruit"}
    assert data.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d3": 0}}
    assert data.n_qrels == 3
    assert data.instructions is None
    assert data.warnings == ()
    assert data.doc_text("d1") == "Apples Apples are red or green."
    assert data.doc_texts()["d2"] == "Bananas are yellow."


def test_qrels_header_line_detected(tmp_path: Path) -> None:
    data = load_beir_folder(make_folder(tmp_path, qrels="query-id\tcorpus-id\tscore\n" + QRELS))
    assert data.n_qrels == 3


def test_instructions_and_other_split(tmp_path: Path) -> None:
    queries = [
        {"_id": "q1", "text": "apple", "instruction": "Only red apples."},
        {"_id": "q2", "text": "yellow"},
    ]
    folder = make_folder(tmp_path, queries=_jsonl(queries), split="dev")
    data = load_beir_folder(folder, split="dev")
    assert data.instructions == {"q1": "Only red apples."}
    assert data.split == "dev"


def test_integer_ids_become_strings(tmp_path: Path) -> None:
    corpus = _jsonl([{"_id": 7, "text": "seven"}])
    data = load_beir_folder(make_folder(tmp_path, corpus=corpus, qrels="q1 7 1\n"))
    assert data.qrels == {"q1": {"7": 1}} and "7" in data.corpus


def test_missing_files_listed(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    (folder / "queries.jsonl").unlink()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(
        DatasetError, match=r"missing queries\.jsonl .* the folder has: corpus\.jsonl, notes\.txt, qrels/"
    ):
        load_beir_folder(folder)


def test_missing_split_lists_available(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, split="dev")
    with pytest.raises(DatasetError, match=r"missing qrels/test\.tsv; available splits: dev"):
        load_beir_folder(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not found"):
        load_beir_folder(tmp_path / "nothing")


def test_non_utf8_line(tmp_path: Path) -> None:
    corpus = (_jsonl(CORPUS[:2]) + '{"_id": "d3", "text": "caf').encode() + b"\xe9" + b'"}\n'
    with pytest.raises(DatasetError, match=r"corpus\.jsonl: line 3: not valid UTF-8"):
        load_beir_folder(make_folder(tmp_path, corpus=corpus))


def test_invalid_json_line(tmp_path: Path) -> None:
    queries = _jsonl(QUERIES[:1]) + "\n" + '{"_id": "q2", "text": "yellow fruit"\n'
    with pytest.raises(DatasetError, match=r"queries\.jsonl: line 3: invalid JSON"):
        load_beir_folder(make_folder(tmp_path, queries=queries))


def test_missing_id(tmp_path: Path) -> None:
    corpus = _jsonl([*CORPUS, {"text": "no id here"}])
    with pytest.raises(DatasetError, match=r"corpus\.jsonl: line 4: document has no '_id' field"):
        load_beir_folder(make_folder(tmp_path, corpus=corpus))


def test_duplicate_id(tmp_path: Path) -> None:
    queries = _jsonl([*QUERIES, {"_id": "q1", "text": "again"}])
    with pytest.raises(DatasetError, match=r"line 3: duplicate query id 'q1' \(first on line 1\)"):
        load_beir_folder(make_folder(tmp_path, queries=queries))


def test_missing_text_field(tmp_path: Path) -> None:
    corpus = _jsonl([{"_id": "d1", "title": "t"}])
    with pytest.raises(DatasetError, match=r"line 1: document 'd1' has no 'text' field"):
        load_beir_folder(make_folder(tmp_path, corpus=corpus))


def test_qrels_wrong_column_count(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"test\.tsv: line 2: expected 3 columns like the first line, got 2"):
        load_beir_folder(make_folder(tmp_path, qrels="q1\td1\t1\nq2\td2\n"))


def test_qrels_non_integer_score(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"test\.tsv: line 3: score '0\.5' is not an integer"):
        load_beir_folder(make_folder(tmp_path, qrels="query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0.5\n"))


def test_qrels_bad_first_line_is_not_taken_for_header(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"line 1: score 'high' is not an integer"):
        read_qrels(make_folder(tmp_path, qrels="q1\td1\thigh\n") / "qrels" / "test.tsv")


def test_qrels_unknown_ids(tmp_path: Path) -> None:
    qrels = QRELS + "q9\td1\t1\nq8\tdX\t1\nq1\tdY\t1\n"
    with pytest.raises(DatasetError) as info:
        load_beir_folder(make_folder(tmp_path, qrels=qrels))
    message = str(info.value)
    assert "2 query ids not in queries.jsonl, e.g. 'q9', 'q8'" in message
    assert "2 doc ids not in corpus.jsonl, e.g. 'dX', 'dY'" in message


def test_empty_documents_warn_with_count(tmp_path: Path) -> None:
    corpus = _jsonl([*CORPUS, {"_id": "e1", "title": "", "text": ""}, {"_id": "e2", "text": "  "}])
    with pytest.warns(DatasetWarning, match=r"2 empty documents .* 'e1', 'e2'"):
        data = load_beir_folder(make_folder(tmp_path, corpus=corpus))
    assert len(data.corpus) == 5  # kept, not dropped
    assert len(data.warnings) == 1 and "2 empty documents" in data.warnings[0]


def test_no_warning_on_clean_folder(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_beir_folder(make_folder(tmp_path))


def test_read_qrels_trec_format(tmp_path: Path) -> None:
    path = tmp_path / "qrels.dl19-rejudged.txt"
    path.write_text("19335 0 1720389 1\n19335 Q0 1729 3\n47923 0 8757180 0\n", encoding="utf-8")
    assert read_qrels(path) == {"19335": {"1720389": 1, "1729": 3}, "47923": {"8757180": 0}}


def test_read_qrels_errors(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_text("q1 0 d1 1\nq1 0 d1 2\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 2: duplicate judgement for query 'q1' doc 'd1' \(first on line 1\)"):
        read_qrels(path)
    path.write_text("q1 d1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1: expected 3 columns .* or 4 .* got 2"):
        read_qrels(path)
    path.write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"no judgements"):
        read_qrels(path)
    with pytest.raises(DatasetError, match=r"not found"):
        read_qrels(tmp_path / "absent.tsv")


@pytest.mark.skipif(not DL19.is_dir(), reason="shared DL19 subset not available")
def test_real_dl19_subset_counts_and_bm25() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from rank1_eval.runs import bm25_run, validate_run

    data = load_beir_folder(DL19)
    assert len(data.corpus) == 5000
    assert len(data.queries) == 50
    assert data.n_qrels == 4102
    assert len(data.qrels) == 43
    assert data.instructions is None

    run = bm25_run(data.doc_texts(), data.queries, k=100)
    report = validate_run(run, data.queries, data.corpus, data.qrels, k=100)
    assert report.n_queries == 50 and report.max_candidates == 100
    assert report.n_judged_without_candidates == 0
    evaluator = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.10"})
    per_query = evaluator.evaluate(run)
    assert len(per_query) == 43
    ndcg10 = statistics.mean(m["ndcg_cut_10"] for m in per_query.values())
    assert 0.6 < ndcg10 < 0.8  # bm25s, no stemming: 0.6876 when written
