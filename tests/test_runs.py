"""Tests for rank1_eval.runs: readers, validation, top-k, TREC output, run-file lookup/fetch, BM25."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import pytest

from rank1_eval import runs
from rank1_eval.runs import (
    RUN_FILES_REPO,
    RunFileError,
    bm25_run,
    fetch_run_file,
    file_sha256,
    read_run,
    run_file_for,
    run_to_lines,
    top_k,
    validate_run,
    write_trec,
)


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- reading


def test_read_rank1_json_accepts_int_scores(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '{"q1": {"d1": 3, "d2": 1.5}, "q2": {"d3": -2}}')
    run = read_run(path)
    assert run == {"q1": {"d1": 3.0, "d2": 1.5}, "q2": {"d3": -2.0}}
    assert all(isinstance(s, float) for docs in run.values() for s in docs.values())


def test_read_mteb_predictions_single_subset_split(tmp_path: Path) -> None:
    obj = {"mteb_model_meta": {"name": "x/y"}, "default": {"test": {"q1": {"d1": 0.5}}}}
    path = _write(tmp_path, "SciFact_predictions.json", json.dumps(obj))
    assert read_run(path) == {"q1": {"d1": 0.5}}


def test_read_mteb_predictions_several_subsets_needs_choice(tmp_path: Path) -> None:
    obj = {
        "mteb_model_meta": {"name": "x/y"},
        "fas": {"test": {"q1": {"d1": 1}}},
        "rus": {"test": {"q2": {"d2": 2}}, "dev": {"q3": {"d3": 3}}},
    }
    path = _write(tmp_path, "p.json", json.dumps(obj))
    with pytest.raises(RunFileError, match=r"several subsets \('fas', 'rus'\).*subset="):
        read_run(path)
    assert read_run(path, subset="fas") == {"q1": {"d1": 1.0}}
    with pytest.raises(RunFileError, match=r"several splits \('test', 'dev'\)"):
        read_run(path, subset="rus")
    assert read_run(path, subset="rus", split="dev") == {"q3": {"d3": 3.0}}
    with pytest.raises(RunFileError, match=r"no subset 'zho'; available: 'fas', 'rus'"):
        read_run(path, subset="zho")


def test_read_trec_run(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.trec", "q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 1 bm25\n\nq2\tQ0\td9\t1\t-0.25\tbm25\n")
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": 1.0}, "q2": {"d9": -0.25}}


def test_reject_non_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", b'{"q1": {"d1": 1},\n "q\xff": {"d2": 2}}')
    with pytest.raises(RunFileError, match=r"run\.json: line 2: not valid UTF-8"):
        read_run(path)


def test_reject_non_json_non_trec(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.txt", "this is not a run\n")
    with pytest.raises(RunFileError, match=r"run\.txt: neither JSON nor a TREC run: line 1 has 5 column"):
        read_run(path)


def test_reject_broken_json(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '{"q1": {"d1": 1,}\n')
    with pytest.raises(RunFileError, match=r"run\.json: line 1 column \d+: not valid JSON"):
        read_run(path)


def test_reject_top_level_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '[["q1", "d1", 1.0]]')
    with pytest.raises(RunFileError, match=r"wrong nesting: expected a JSON object .* got list"):
        read_run(path)


def test_reject_qid_mapped_to_number(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '{"q1": {"d1": 1}, "q2": 0.7}')
    with pytest.raises(RunFileError, match=r"query 'q2' maps to float 0\.7, expected an object"):
        read_run(path)


def test_reject_three_level_nesting_with_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '{"default": {"test": {"q1": {"d1": 1}}}}')
    with pytest.raises(RunFileError, match=r"mteb_model_meta"):
        read_run(path)


def test_reject_non_numeric_scores_with_examples(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '{"q1": {"d1": "0.5", "d2": true, "d3": 1}, "q2": {"d4": null}}')
    with pytest.raises(RunFileError) as info:
        read_run(path)
    message = str(info.value)
    assert "3 non-numeric scores" in message
    assert 'q1/d1: "0.5"' in message and "q1/d2: true" in message and "q2/d4: null" in message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_reject_nan_inf_json(tmp_path: Path, literal: str) -> None:
    path = _write(tmp_path, "run.json", '{"q1": {"d1": ' + literal + "}}")
    with pytest.raises(RunFileError, match=r"1 NaN/infinite score, e\.g\. q1/d1"):
        read_run(path)


def test_reject_duplicate_doc_in_json(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.json", '{"q1": {"d1": 1, "d1": 2}}')
    with pytest.raises(RunFileError, match=r"duplicate key 'd1'"):
        read_run(path)


def test_reject_trec_wrong_column_count(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.trec", "q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 1.0\n")
    with pytest.raises(RunFileError, match=r"run\.trec: line 2: expected 6 .* got 5"):
        read_run(path)


def test_reject_trec_non_numeric_score(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.trec", "q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 high tag\n")
    with pytest.raises(RunFileError, match=r"line 2: score 'high' is not a number"):
        read_run(path)


def test_reject_trec_nan_score(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.trec", "q1 Q0 d1 1 nan tag\n")
    with pytest.raises(RunFileError, match=r"line 1: score 'nan' is NaN or infinite"):
        read_run(path)


def test_reject_trec_duplicate_pair(tmp_path: Path) -> None:
    path = _write(tmp_path, "run.trec", "q1 Q0 d1 1 2.5 t\nq2 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n")
    with pytest.raises(RunFileError, match=r"line 3: duplicate \(qid, docid\) \('q1', 'd1'\), first seen on line 1"):
        read_run(path)


@pytest.mark.parametrize("content", ["", "  \n\n", "{}"])
def test_reject_empty_file(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path, "run.json", content)
    with pytest.raises(RunFileError, match=r"empty"):
        read_run(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match=r"not found"):
        read_run(tmp_path / "nope.json")


# --------------------------------------------------------------------------------------- top-k/ranking


def test_top_k_ties_by_docid_descending() -> None:
    run = {"q1": {"a": 1.0, "b": 2.0, "c": 2.0, "d": 0.5}, "q2": {"x": 1.0}}
    cut = top_k(run, 2)
    # b and c tie at 2.0: doc id descending (trec_eval order) puts c first.
    assert list(cut["q1"].items()) == [("c", 2.0), ("b", 2.0)]
    assert cut["q2"] == {"x": 1.0}  # fewer than k: kept whole, never dropped
    assert list(top_k(run, 3)["q1"]) == ["c", "b", "a"]
    with pytest.raises(ValueError):
        top_k(run, 0)


# ------------------------------------------------------------------------------------------ validation


def test_validate_run_unknown_ids_raise_with_counts_and_examples() -> None:
    run = {"q1": {"d1": 1.0, "dX": 0.5}, "qZ": {"d2": 1.0, "dY": 0.1}}
    with pytest.raises(RunFileError) as info:
        validate_run(run, ["q1", "q2"], {"d1", "d2"})
    message = str(info.value)
    assert "1 query id of 2 in the run not in the task, e.g. 'qZ'" in message
    assert "2 doc ids (in 2 queries) not in the corpus, e.g. q1/dX, qZ/dY" in message


def test_validate_run_examples_are_capped() -> None:
    run = {f"x{i}": {"d1": 1.0} for i in range(8)}
    with pytest.raises(RunFileError, match=r"8 query ids of 8 .* 'x0', 'x1', 'x2', 'x3', 'x4', \.\.\."):
        validate_run(run, ["q1"], ["d1"])


def test_validate_run_report_and_warnings() -> None:
    run = {"q1": {"d1": 1.0, "d2": 0.5}, "q2": {}, "q3": {"d1": 2.0, "d2": 1.0, "d3": 0.0}}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q4": {"d3": 2}}
    report = validate_run(run, ["q1", "q2", "q3", "q4"], ["d1", "d2", "d3"], qrels, k=3)
    assert report.n_queries == 3
    assert report.n_pairs == 5
    assert report.n_task_queries == 4
    assert report.n_task_queries_missing == 1
    assert report.n_empty_queries == 1
    assert report.n_judged_queries == 3
    assert report.n_judged_without_candidates == 2  # q2 (empty) and q4 (absent)
    assert report.n_short_queries == 1  # q1 has 2 < 3; q2 is counted as empty instead
    assert (report.min_candidates, report.max_candidates) == (0, 3)
    assert not report.ok
    text = "\n".join(report.warnings)
    assert "1 query of the task absent from the run, e.g. 'q4'" in text
    assert "2 queries judged in qrels but without candidates, e.g. 'q2', 'q4'" in text
    assert "1 query with fewer than k=3 candidates, e.g. 'q1'" in text
    # Nothing was dropped or altered.
    assert run["q2"] == {} and len(run["q3"]) == 3


def test_validate_run_clean() -> None:
    report = validate_run({"q1": {"d1": 1.0}}, {"q1": "text"}, {"d1": {}}, {"q1": {"d1": 1}}, k=1)
    assert report.ok and report.warnings == ()


# --------------------------------------------------------------------------------------------- writing


def test_run_to_lines_and_roundtrip(tmp_path: Path) -> None:
    run = {"q2": {"a": 0.1, "b": 0.30000000000000004}, "q1": {"x": 1.0, "z": 1.0, "y": 3}}
    lines = list(run_to_lines(run, "rank1"))
    assert lines == [
        "q1 Q0 y 1 3.0 rank1",
        "q1 Q0 z 2 1.0 rank1",  # tie with x: doc id descending
        "q1 Q0 x 3 1.0 rank1",
        "q2 Q0 b 1 0.30000000000000004 rank1",
        "q2 Q0 a 2 0.1 rank1",
    ]
    path = write_trec(run, tmp_path / "out" / "run.trec", "rank1")
    assert path.read_text(encoding="utf-8") == "\n".join(lines) + "\n"
    assert read_run(path) == {qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items()}
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_write_trec_rejects_whitespace_ids(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match=r"doc id 'a b'"):
        write_trec({"q1": {"a b": 1.0}}, tmp_path / "r.trec", "tag")
    with pytest.raises(RunFileError, match=r"tag"):
        list(run_to_lines({"q1": {"a": 1.0}}, "my tag"))
    assert not (tmp_path / "r.trec").exists()


def test_file_sha256(tmp_path: Path) -> None:
    path = _write(tmp_path, "f.bin", b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = _write(tmp_path, "big.bin", b"x" * (3 << 20))
    assert file_sha256(big) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


# -------------------------------------------------------------------------------------- run-file names


@pytest.mark.parametrize(
    ("task", "subtask", "expected"),
    [
        ("SciFact", None, "SciFact_default_predictions.json"),
        ("SciFact", "default", "SciFact_default_predictions.json"),
        ("TRECCOVID", "default", "TRECCOVID_default_predictions.json"),
        ("QuoraRetrieval", None, "QuoraRetrieval_default_predictions.json"),
        ("mFollowIR", "fas", "mFollowIR_fas_predictions.json"),
        ("mFollowIRCrossLingual", "eng-zho", "mFollowIRCrossLingual_eng-zho_predictions.json"),
        ("BrightRetrieval", "theoremqa_theorems", "theoremqa_theorems_bm25_long_False/score.json"),
        ("BrightBiologyRetrieval", None, "biology_bm25_long_False/score.json"),
        ("BrightTheoremQAQuestionsRetrieval", "default", "theoremqa_questions_bm25_long_False/score.json"),
    ],
)
def test_run_file_for(task: str, subtask: str | None, expected: str) -> None:
    assert run_file_for(task, subtask) == expected


def test_manifest_covers_seed_tasks() -> None:
    beir = [
        "ArguAna",
        "ClimateFEVER",
        "DBPedia",
        "FiQA2018",
        "NFCorpus",
        "SCIDOCS",
        "SciFact",
        "Touche2020",
        "TRECCOVID",
        "FEVER",
        "HotpotQA",
        "NQ",
        "QuoraRetrieval",
    ]
    for task in beir:
        assert run_file_for(task) == f"{task}_default_predictions.json"
    domains = [
        "biology",
        "earth_science",
        "economics",
        "psychology",
        "robotics",
        "stackoverflow",
        "sustainable_living",
        "pony",
        "leetcode",
        "aops",
        "theoremqa_theorems",
        "theoremqa_questions",
    ]
    for domain in domains:
        assert run_file_for("BrightRetrieval", domain) == f"{domain}_bm25_long_False/score.json"
    for sub in ("fas", "rus", "zho"):
        assert run_file_for("mFollowIR", sub) == f"mFollowIR_{sub}_predictions.json"
        assert run_file_for("mFollowIRCrossLingual", f"eng-{sub}").endswith(f"_eng-{sub}_predictions.json")
    manifest = json.loads(runs.MANIFEST_PATH.read_text(encoding="utf-8"))
    assert manifest["repo_id"] == RUN_FILES_REPO and "_note" in manifest


def test_run_file_for_errors() -> None:
    with pytest.raises(RunFileError, match=r"no run file known for task 'Nope'; known tasks: .*SciFact"):
        run_file_for("Nope")
    with pytest.raises(RunFileError, match=r"NevIR has no run file"):
        run_file_for("NevIR", "default")
    with pytest.raises(RunFileError, match=r"several run files; choose a subtask: fas, rus, zho"):
        run_file_for("mFollowIR")
    with pytest.raises(RunFileError, match=r"no run file for subtask 'deu'; available: fas, rus, zho"):
        run_file_for("mFollowIR", "deu")
    with pytest.raises(RunFileError, match=r"BrightRetrieval/biology"):
        run_file_for("BrightBiologyRetrieval", "pony")


# -------------------------------------------------------------------------------------------- fetching

_SCIFACT = "SciFact_default_predictions.json"


def test_fetch_from_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "repo", _SCIFACT, '{"q1": {"d1": 1}}')
    _write(tmp_path / "repo", "biology_bm25_long_False/score.json", '{"q1": {"d1": 2}}')
    monkeypatch.setenv("RANK1_RUN_FILES", str(tmp_path / "repo"))
    assert read_run(fetch_run_file("SciFact", "default")) == {"q1": {"d1": 1.0}}
    assert read_run(fetch_run_file("BrightRetrieval", "biology")) == {"q1": {"d1": 2.0}}
    with pytest.raises(RunFileError, match=r"'NFCorpus_default_predictions.json' not found under .*--run-file"):
        fetch_run_file("NFCorpus")


def test_fetch_offline_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK1_RUN_FILES", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(RunFileError) as info:
        fetch_run_file("SciFact", cache_dir=tmp_path / "hf-cache")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message
    assert _SCIFACT in message and RUN_FILES_REPO in message and "--run-file" in message


def test_fetch_offline_from_prepopulated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK1_RUN_FILES", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "hf-cache"
    repo_dir = cache / ("datasets--" + RUN_FILES_REPO.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    _write(repo_dir / "refs", "main", commit)
    _write(repo_dir / "snapshots" / commit, _SCIFACT, '{"q7": {"d7": 7}}')
    path = fetch_run_file("SciFact", cache_dir=cache)
    assert read_run(path) == {"q7": {"d7": 7.0}}


def test_fetch_connection_error_is_run_file_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def unreachable(**kwargs: object) -> str:
        raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")

    monkeypatch.delenv("RANK1_RUN_FILES", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    with pytest.raises(RunFileError, match=r"could not download 'mFollowIR_fas_predictions.json'") as info:
        fetch_run_file("mFollowIR", "fas")
    assert "ConnectionError" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionError)


# ------------------------------------------------------------------------------------------------ BM25


def _lucene_bm25(tf: int, df: int, n_docs: int, dl: int, avgdl: float, k1: float = 1.5, b: float = 0.75) -> float:
    # Lucene >= 8 form (what bm25s "lucene" computes): no constant (k1 + 1) factor in the numerator.
    idf = math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_bm25_run_hand_computed() -> None:
    corpus = {"doc A": "apple banana", "d/2": "apple apple cherry", "3": "cherry date"}
    queries = {"q1": "banana", "q2": "the apple", "q3": "zebra"}
    run = bm25_run(corpus, queries, k=10)
    avgdl = 7 / 3
    assert list(run["q1"]) == ["doc A"]  # score-0 documents are not candidates
    assert run["q1"]["doc A"] == pytest.approx(_lucene_bm25(1, 1, 3, 2, avgdl), rel=1e-5)
    # "the" is an English stopword; d/2 has apple twice.
    assert list(run["q2"]) == ["d/2", "doc A"]
    assert run["q2"]["d/2"] == pytest.approx(_lucene_bm25(2, 2, 3, 3, avgdl), rel=1e-5)
    assert run["q2"]["doc A"] == pytest.approx(_lucene_bm25(1, 2, 3, 2, avgdl), rel=1e-5)
    assert run["q3"] == {}  # no indexed term: kept, empty
    assert bm25_run(corpus, queries, k=1)["q2"] == {"d/2": run["q2"]["d/2"]}


def test_bm25_run_ties_cut_deterministically() -> None:
    corpus = {f"d{i}": "same words here" for i in range(5)}
    run = bm25_run(corpus, {"q": "words"}, k=2)
    assert list(run["q"]) == ["d4", "d3"]
