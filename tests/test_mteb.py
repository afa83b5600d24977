"""mteb integration: registry, get_model, evaluate and the deprecated MTEB(...).run, with the network blocked."""

from __future__ import annotations

import json
import socket

import mteb
import pytest
from conftest import DEMO, MICRO_RANK1

from rank1_eval import rank1


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open an internet socket fails the test loudly."""

    def refuse(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise RuntimeError(f"network access attempted: {address}")
        return real_connect(self, address, *args, **kwargs)

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("network")))


def _local_task(n_queries=3, per_query=8):
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    queries = [json.loads(line) for line in (DEMO / "queries.jsonl").open()][:n_queries]
    corpus = {d["_id"]: d for d in map(json.loads, (DEMO / "corpus.jsonl").open())}
    run: dict[str, list[str]] = {}
    for line in (DEMO / "bm25s_top20.trec").open():
        qid, _, docid, *_ = line.split()
        run.setdefault(qid, []).append(docid)
    qrels: dict[str, dict[str, int]] = {}
    for line in (DEMO / "qrels" / "test.tsv").open():
        q, d, r = line.split("\t")
        qrels.setdefault(q, {})[d] = int(r)
    qids = [q["_id"] for q in queries]
    top = {q: run[q][:per_query] for q in qids}
    docs = sorted({d for q in qids for d in top[q]})
    split = {
        "queries": Dataset.from_list([{"id": q["_id"], "text": q["text"]} for q in queries]),
        "corpus": Dataset.from_list([{"id": d, "text": corpus[d]["text"], "title": ""} for d in docs]),
        "relevant_docs": {q: {d: r for d, r in qrels[q].items()} for q in qids},
        "top_ranked": top,
    }

    class TinyDL19Rerank(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="TinyDL19Rerank", description="Three DL19 queries with their bm25s top-8 (test fixture).",
            reference=None, dataset={"path": "local", "revision": "local"}, type="Reranking", category="t2t",
            modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"], main_score="ndcg_at_10",
            date=None, domains=None, task_subtypes=None, license=None, annotations_creators=None, dialect=None,
            sample_creation=None, bibtex_citation="",
        )  # fmt: skip

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return TinyDL19Rerank()


@pytest.fixture
def micro_model(hf_engine):
    model = rank1(str(MICRO_RANK1), device="cpu", fp_options="float32", engine="transformers",
                  context_size=1024, max_output_tokens=64)  # fmt: skip
    model._engine = hf_engine
    return model


def test_registry_has_every_checkpoint():
    for name in ["jhu-clsp/rank1-0.5b", "jhu-clsp/rank1-32b", "jhu-clsp/rank1-mistral-2501-24b-awq",
                 "jhu-clsp/rank1-llama3-8b-awq", "jhu-clsp/rank1-14b-awq"]:  # fmt: skip
        meta = mteb.get_model_meta(name)
        assert meta.model_type == ["cross-encoder"]
        assert meta.loader is not None


def test_get_model_offline_returns_our_class(no_network):
    model = mteb.get_model("jhu-clsp/rank1-7b")
    assert isinstance(model, rank1)
    assert model.model_name_or_path == "jhu-clsp/rank1-7b"
    assert model._engine is None  # nothing loaded, nothing downloaded


def test_get_model_loader_kwargs(no_network):
    model = mteb.get_model("jhu-clsp/rank1-14b", device="cpu", fp_options="float32", engine="transformers")
    assert model.engine_config.device == "cpu"
    assert model.engine_name == "transformers"


def test_mteb_evaluate_local_task(micro_model, no_network):
    result = mteb.evaluate(micro_model, _local_task(), cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    assert 0.0 <= scores["ndcg_at_10"] <= 1.0
    assert scores["main_score"] == scores["ndcg_at_10"]
    assert micro_model.stats.pairs_scored == 24


def test_deprecated_mteb_run(micro_model, no_network, tmp_path):
    from mteb import MTEB

    with pytest.warns(Warning):
        results = MTEB(tasks=[_local_task(2, 4)]).run(micro_model, output_folder=str(tmp_path))
    assert 0.0 <= results[0].scores["test"][0]["ndcg_at_10"] <= 1.0
