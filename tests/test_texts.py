"""``texts.jsonl.gz``: written once per result folder from the loaded task, read back exactly, malformed files loud."""

from __future__ import annotations

import gzip
import json

import pytest

from rank1_eval.texts import TEXTS_FILE, Texts, TextsError, doc_text, encode_texts, read_texts, texts_lines, write_texts


def test_round_trip_one_copy_per_document(tmp_path):
    queries = [{"id": "q2", "text": "why is the sky blue", "instruction": "only physics"}, {"id": 1, "text": "cats"}]
    docs = [
        {"id": "d1", "title": "Sky", "text": "Rayleigh scattering."},
        {"id": "d0", "title": "", "text": "  Cats purr.  "},
        {"id": "d1", "title": "Sky", "text": "Rayleigh scattering."},  # a candidate of two queries: kept once
    ]
    path = write_texts(tmp_path / TEXTS_FILE, queries, docs, {"task": "T_default", "source": "mteb"})
    raw = [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
    assert raw[0] == {"type": "meta", "task": "T_default", "source": "mteb", "queries": 2, "docs": 2}
    assert [r["id"] for r in raw[1:]] == ["q2", "1", "d0", "d1"]  # queries in task order, then docs by id
    texts = read_texts(tmp_path)
    assert texts.queries == {"q2": "why is the sky blue", "1": "cats"}
    assert texts.instructions == {"q2": "only physics"}
    assert texts.docs == {"d1": "Sky Rayleigh scattering.", "d0": "Cats purr."}  # mteb's title + " " + text
    assert texts.meta["task"] == "T_default"


def test_same_texts_same_bytes_and_no_temporary_left(tmp_path):
    rows = ([{"id": "q", "text": "x"}], [{"id": "d", "text": "y"}], {"task": "t"})
    a = encode_texts(texts_lines(*rows))
    b = encode_texts(texts_lines(*rows))
    assert a == b and a[4:8] == b"\0\0\0\0"  # gzip mtime 0: the file's checksum does not change on rewrite
    write_texts(tmp_path / TEXTS_FILE, *rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEXTS_FILE]


def test_doc_text_follows_mteb():
    assert doc_text("T", "body") == "T body"
    assert doc_text("", " body ") == "body"
    assert doc_text(None, None) == ""


def test_missing_file_is_empty_and_malformed_files_are_loud(tmp_path):
    assert read_texts(tmp_path) == Texts() and not read_texts(tmp_path)
    good = encode_texts(texts_lines([{"id": "q", "text": "x" * 5000}], [], {}))
    (tmp_path / TEXTS_FILE).write_bytes(good[: len(good) // 2])
    with pytest.raises(TextsError, match="not a complete gzip file"):
        read_texts(tmp_path)
    (tmp_path / TEXTS_FILE).write_bytes(b"not gzip at all")
    with pytest.raises(TextsError, match="not a complete gzip file"):
        read_texts(tmp_path)
    (tmp_path / TEXTS_FILE).write_bytes(gzip.compress(b'{"type": "meta"}\n{"type": "passage", "id": 1}\n'))
    with pytest.raises(TextsError, match="line 2 is not a text record"):
        read_texts(tmp_path)
    (tmp_path / TEXTS_FILE).write_bytes(gzip.compress(b'{"type": "query"\n'))
    with pytest.raises(TextsError, match="malformed line"):
        read_texts(tmp_path)
    (tmp_path / TEXTS_FILE).write_bytes(gzip.compress(b'{"type": "doc", "text": "no id"}\n'))
    with pytest.raises(TextsError, match="malformed line"):
        read_texts(tmp_path)


def test_texts_of_an_mteb_task_come_from_mteb_s_own_loader(tmp_path):
    """NevIR through mteb's own class, pointed at a Hub-shaped local copy: the rows the result folder keeps."""
    pytest.importorskip("mteb")
    from hub_nevir import build

    from rank1_eval.outputs import judged_texts
    from rank1_eval.tasks import load_task

    task = load_task("NevIR", dataset_path=str(build(tmp_path)))
    assert task.source == "mteb"
    predictions = {"0_q1": {"0_doc1": 0.9, "0_doc2": 0.1}, "1_q2": {"1_doc1": 0.2}}  # 1_doc2 (relevant) not judged
    j = judged_texts(task, predictions)
    assert [q["id"] for q in j.queries] == ["0_q1", "1_q2"]  # judged queries only, in task order
    assert {q["id"]: q["text"] for q in j.queries}["0_q1"] == "Which museum is open on Mondays?"
    docs = {d["id"]: d for d in j.docs}
    assert set(docs) == {"0_doc1", "0_doc2", "1_doc1", "1_doc2"}  # judged + the relevant one the run missed
    assert docs["0_doc1"] == {"id": "0_doc1", "title": "Pair 0", "text": "The museum opens on Mondays."}
    meta = dict(j.meta)
    assert meta.pop("dataset_revision").startswith("local-")  # a local Hub copy: "local-" + its content hash
    assert meta == {"task": "NevIR_default", "subset": "default", "split": "test", "source": "mteb"}
    write_texts(tmp_path / TEXTS_FILE, j.queries, j.docs, j.meta)
    assert read_texts(tmp_path).docs["0_doc1"] == "Pair 0 The museum opens on Mondays."
