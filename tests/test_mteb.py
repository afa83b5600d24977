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
            name="TinyDL19Rerank",
            description="Three DL19 queries with their bm25s top-8 (test fixture).",
            reference=None,
            dataset={"path": "local", "revision": "local"},
            type="Reranking",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="ndcg_at_10",
            date=None,
            domains=None,
            task_subtypes=None,
            license=None,
            annotations_creators=None,
            dialect=None,
            sample_creation=None,
            bibtex_citation="",
        )

        def load_data(self, num_proc=None, **kwargs):
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return TinyDL19Rerank()


@pytest.fixture
def micro_model(hf_engine):
    model = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        engine="transformers",
        context_size=1024,
        max_output_tokens=64,
    )
    model._engine = hf_engine
    return model


def test_registry_has_every_checkpoint():
    for name in [
        "jhu-clsp/rank1-0.5b",
        "jhu-clsp/rank1-32b",
        "jhu-clsp/rank1-mistral-2501-24b-awq",
        "jhu-clsp/rank1-llama3-8b-awq",
        "jhu-clsp/rank1-14b-awq",
    ]:
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


@pytest.mark.slow
def test_mteb_evaluate_loads_mfollowir_itself_and_merges_instructions_once(
    micro_model, hub_fixtures, monkeypatch, single_thread
):
    """mteb's own v1 loader, conversion and candidates; p-MRR from the local qrel_diff; one instruction per prompt."""
    from pathlib import Path

    task = mteb.get_task("mFollowIR", hf_subsets=["fas"])
    local = str(Path(hub_fixtures["hub"]) / "jhu-clsp" / "mFollowIR-parquet-mteb")
    task.metadata = task.metadata.model_copy(update={"dataset": {"path": local, "revision": "local"}})
    seen: list[str] = []
    real_prepare = micro_model.prepare
    monkeypatch.setattr(micro_model, "prepare", lambda q, p: seen.extend(q) or real_prepare(q, p))
    result = mteb.evaluate(micro_model, [task], cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]
    assert scores["hf_subset"] == "fas" and "p-MRR" in scores and "ndcg_at_20" in scores["og"]
    from rank1_eval.tasks import load_task

    queries = load_task("mFollowIR", "fas", dataset_path=local).data["queries"]  # mteb unloads its copy
    expected = {f"{q} {i}" for q, i in zip(queries["text"], queries["instruction"], strict=True)}
    assert len(expected) == 4 and set(seen) == expected  # query + instruction: never the instruction twice


@pytest.mark.slow
@pytest.mark.parametrize(("name", "subtask"), [("BrightRetrieval", "biology"), ("BrightLeetcodeRetrieval", None)])
def test_bright_through_mteb_evaluate_and_deprecated_run(
    micro_model, run_files_env, name, subtask, tmp_path, single_thread
):
    from mteb import MTEB

    from rank1_eval import reranking_task

    task = reranking_task(name, subtask, data_root=run_files_env["hub"], top_k=2, output_dir=tmp_path)
    result = mteb.evaluate(micro_model, [task], cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["standard"][0]
    assert 0.0 <= scores["ndcg_at_10"] <= 1.0 and micro_model.stats.pairs_total == 6
    with pytest.warns(Warning):
        runs = MTEB(tasks=[task]).run(micro_model, output_folder=str(tmp_path / "mteb"))
    assert runs[0].scores["standard"][0]["ndcg_at_10"] == scores["ndcg_at_10"]


def test_only_the_adapter_imports_mteb():
    """rank1_eval.mteb_compat is the one module of rank1_eval that imports mteb: a new mteb that moves an API
    breaks it alone (scripts/test_mteb_versions.sh runs the demo against other mteb versions)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    importers = [
        str(p.relative_to(root))
        for p in sorted((root / "rank1_eval").rglob("*.py"))
        if p.name != "mteb_compat.py" and re.search(r"^\s*(import mteb|from mteb)\b", p.read_text(), re.M)
    ]
    assert importers == []
