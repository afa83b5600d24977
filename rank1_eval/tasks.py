"""Tasks: seed names (``NevIR default``, ``BrightRetrieval biology``, ...) or a BEIR folder -> a loaded mteb task.

Everything the model will see is decided here, before any model is loaded: the task's queries, corpus and
qrels, and the candidates each query is reranked over (the task's own ``top_ranked`` or a run file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rank1_eval.records import Pair

BEIR_TASKS = (
    "ArguAna", "ClimateFEVER", "DBPedia", "FiQA2018", "NFCorpus", "SCIDOCS", "SciFact", "Touche2020", "TRECCOVID",
    "FEVER", "HotpotQA", "NQ", "QuoraRetrieval",
)  # fmt: skip
BRIGHT_DOMAINS = (
    "biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow", "sustainable_living",
    "pony", "leetcode", "aops", "theoremqa_theorems", "theoremqa_questions",
)  # fmt: skip

# seed task name -> valid subtasks (the first is the default); every task reranks a first stage (SPEC §3).
SEED_TASKS: dict[str, tuple[str, ...]] = {
    "NevIR": ("default",),
    "mFollowIR": ("fas", "rus", "zho"),
    "mFollowIRCrossLingual": ("eng-fas", "eng-rus", "eng-zho"),
    "BrightRetrieval": BRIGHT_DOMAINS,
    **{name: ("default",) for name in BEIR_TASKS},
}
# Tasks reranked over a rank1 run file by default (SPEC §3): BRIGHT's and BEIR's mteb `top_ranked` is missing or
# the whole corpus; mFollowIR's is mteb's own candidate list, but the paper reranks the mE5-base top-100.
NEEDS_RUN_FILE = {"BrightRetrieval", "mFollowIR", "mFollowIRCrossLingual", *BEIR_TASKS}


class TaskError(ValueError):
    """A task that cannot be resolved or loaded; the message says what is missing."""


@dataclass
class LoadedTask:
    """An mteb task with its data for one (subset, split), ready to be reranked."""

    task: Any  # mteb AbsTaskRetrieval
    name: str  # the mteb task name
    subtask: str | None  # the seed subtask (None = default)
    subset: str  # mteb hf_subset
    split: str
    main_metric: str
    dataset_revision: str | None
    source: str  # "mteb" or the BEIR folder path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> dict[str, Any]:
        return self.task.dataset[self.subset][self.split]

    @property
    def label(self) -> str:
        return f"{self.name}_{self.subtask or 'default'}"

    def query_ids(self) -> list[str]:
        return list(self.data["queries"]["id"])

    def corpus_ids(self) -> list[str]:
        return list(self.data["corpus"]["id"])

    @property
    def qrels(self) -> dict[str, dict[str, int]]:
        return self.data["relevant_docs"]

    @property
    def top_ranked(self) -> dict[str, list[str]] | None:
        return self.data.get("top_ranked")

    def set_candidates(self, ranking: Mapping[str, Sequence[str]]) -> None:
        """Replace the task's candidates (``top_ranked``) by a first-stage ranking (best first)."""
        self.data["top_ranked"] = {qid: list(docs) for qid, docs in ranking.items()}

    def limit_queries(self, n: int) -> None:
        """Keep the first ``n`` queries (task order) that have candidates; qrels and candidates follow."""
        top = self.top_ranked or {}
        keep = [q for q in self.query_ids() if q in top][:n]
        keep_set = set(keep)
        data = self.data
        data["queries"] = data["queries"].filter(lambda row: row["id"] in keep_set)
        data["relevant_docs"] = {q: d for q, d in data["relevant_docs"].items() if q in keep_set}
        data["top_ranked"] = {q: d for q, d in top.items() if q in keep_set}

    def text_rows(self, qids: Sequence[str], docids: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The dataset rows (``id``, ``text``, ``instruction``/``title``) of these queries and documents.

        What the result folder keeps as ``texts.jsonl.gz``: read from the loaded task whatever its source (the
        Hub through mteb's loader, a ``--dataset-path`` copy, a BEIR folder), so nothing is fetched again later.
        """
        data = self.data
        queries, corpus = data["queries"], data["corpus"]
        wanted = set(qids)
        q_cols = [c for c in ("id", "text", "instruction") if c in queries.column_names]
        by_id = {
            row["id"]: row for row in queries.select_columns(q_cols).to_list() if row["id"] in wanted
        }  # task order is kept by the caller's qids
        q_rows = [by_id[q] for q in qids if q in by_id]
        d_cols = [c for c in ("id", "title", "text") if c in corpus.column_names]
        ids = corpus["id"]
        keep = [i for i, d in enumerate(ids) if d in docids]
        d_rows = corpus.select(keep).select_columns(d_cols).to_list() if keep else []
        return q_rows, d_rows

    def pairs(self) -> list[Pair]:
        """Every (query, candidate) pair with the texts mteb will hand the model (SPEC §1.1)."""
        data = self.data
        queries = data["queries"]
        has_instr = "instruction" in queries.column_names
        qtext = dict(zip(queries["id"], queries["text"], strict=True))
        qinstr = dict(zip(queries["id"], queries["instruction"], strict=True)) if has_instr else {}
        corpus = data["corpus"]
        titles = corpus["title"] if "title" in corpus.column_names else [None] * len(corpus)
        docs = {i: mteb_doc_text(t, x) for i, t, x in zip(corpus["id"], titles, corpus["text"], strict=True)}
        out = []
        for qid in queries["id"]:
            for rank, docid in enumerate((self.top_ranked or {}).get(qid, []), start=1):
                out.append(Pair(qid, docid, qtext[qid], docs[docid], qinstr.get(qid), first_stage_rank=rank))
        return out


def mteb_doc_text(title: str | None, text: str) -> str:
    """mteb 2.x's document text: ``(title + " " + text).strip()`` when a title is non-empty, else ``text.strip()``."""
    return (title + " " + text).strip() if title else text.strip()


def valid_task_names() -> str:
    return ", ".join(sorted(SEED_TASKS)) + ", any mteb Retrieval/Reranking task, or a BEIR-style folder"


def _offline_message(exc: BaseException, what: str) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = ""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in reason.lower() or "connect" in reason.lower():
        hint = " (the Hugging Face Hub is unreachable or HF_HUB_OFFLINE=1: pass --dataset-path to a local copy)"
    return f"could not download {what}: {reason}{hint}"


def get_mteb_task(name: str, subtask: str | None = None, *, split: str | None = None) -> tuple[Any, str, str]:
    """The mteb task object (data not loaded), its hf_subset and split."""
    import mteb

    if name in SEED_TASKS and subtask not in (None, "default") and subtask not in SEED_TASKS[name]:
        raise TaskError(f"unknown subtask {subtask!r} for {name}; valid: {', '.join(SEED_TASKS[name])}")
    try:
        task = mteb.get_task(name)
    except (KeyError, ValueError) as exc:
        raise TaskError(f"unknown task {name!r}; valid: {valid_task_names()}") from exc
    if task.metadata.type not in ("Retrieval", "Reranking", "InstructionReranking", "InstructionRetrieval"):
        raise TaskError(f"{name} is a {task.metadata.type} task; rank1 reranks Retrieval/Reranking tasks")
    subsets = list(task.hf_subsets)
    subset = subtask if subtask not in (None, "default") else subsets[0]
    if subset not in subsets:
        raise TaskError(f"unknown subtask {subtask!r} for {name}; valid: {', '.join(subsets)}")
    split = split or task.metadata.eval_splits[0]
    if split not in task.metadata.eval_splits:
        raise TaskError(f"unknown split {split!r} for {name}; valid: {', '.join(task.metadata.eval_splits)}")
    return mteb.get_task(name, eval_splits=[split], hf_subsets=[subset]), subset, split


def load_mteb_task(
    name: str,
    subtask: str | None = None,
    *,
    split: str | None = None,
    dataset_path: str | None = None,
    main_metric: str | None = None,
) -> LoadedTask:
    """Load an mteb task's data; ``dataset_path`` points the upstream loader at a local Hub-layout copy."""
    task, subset, split = get_mteb_task(name, subtask, split=split)
    if dataset_path is not None:
        dataset = dict(task.metadata.dataset, path=str(dataset_path), revision="local")
        task.metadata = task.metadata.model_copy(update={"dataset": dataset})
    revision = task.metadata.dataset.get("revision")
    try:
        task.load_data()
    except Exception as exc:  # datasets/hub raise many types; re-raise one clear error
        what = f"dataset {task.metadata.dataset['path']!r} (revision {revision}) of task {name}"
        raise TaskError(_offline_message(exc, what)) from exc
    return LoadedTask(
        task=task,
        name=name,
        subtask=subtask if subtask not in (None, "default") else None,
        subset=subset,
        split=split,
        main_metric=main_metric or task.metadata.main_score,
        dataset_revision=revision,
        source="mteb",
    )


def folder_revision(folder: Path, split: str) -> str:
    """A content hash of a BEIR folder's files: the dataset revision of a local task."""
    import hashlib

    from rank1_eval.runs import file_sha256

    h = hashlib.sha256()
    for rel in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        h.update(f"{rel}:{file_sha256(folder / rel)}".encode())
    return h.hexdigest()[:16]


def _safe_task_name(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "", folder.name.title()) or "Local"
    return f"{name}Local"


def load_beir_task(
    folder: str | os.PathLike[str],
    *,
    split: str = "test",
    main_metric: str = "ndcg_at_10",
    name: str | None = None,
) -> LoadedTask:
    """A BEIR-style folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) as an mteb retrieval task."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    from rank1_eval.beir import load_beir_folder

    path = Path(folder)
    beir = load_beir_folder(path, split=split)
    task_name = name or _safe_task_name(path)
    queries_rows = [
        {"id": qid, "text": text, **({"instruction": beir.instructions.get(qid) or ""} if beir.instructions else {})}
        for qid, text in beir.queries.items()
    ]
    corpus_rows = [
        {"id": did, "title": d.get("title", ""), "text": d.get("text", "")} for did, d in beir.corpus.items()
    ]
    split_data = {
        "corpus": Dataset.from_list(corpus_rows),
        "queries": Dataset.from_list(queries_rows),
        "relevant_docs": beir.qrels,
        "top_ranked": None,
    }
    revision = folder_revision(path, split)
    metadata = TaskMetadata(
        name=task_name,
        description=f"Local BEIR-style folder {path}",
        reference=None,
        dataset={"path": str(path.resolve()), "revision": revision},
        type="Reranking",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=["eng-Latn"],
        main_score=main_metric,
        date=None,
        domains=None,
        task_subtypes=None,
        license=None,
        annotations_creators=None,
        dialect=None,
        sample_creation=None,
        bibtex_citation="",
    )

    class LocalBeirTask(AbsTaskRetrieval):
        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            self.dataset = {"default": {split: split_data}}
            self.data_loaded = True

    LocalBeirTask.metadata = metadata
    LocalBeirTask.__name__ = task_name
    task = LocalBeirTask()
    task.load_data()
    return LoadedTask(
        task=task,
        name=task_name,
        subtask=None,
        subset="default",
        split=split,
        main_metric=main_metric,
        dataset_revision=revision,
        source=str(path),
    )


def load_task(
    task: str,
    subtask: str | None = None,
    *,
    split: str | None = None,
    dataset_path: str | None = None,
    main_metric: str | None = None,
) -> LoadedTask:
    """A seed/mteb task name or a BEIR-style folder."""
    if os.path.isdir(task):
        if subtask not in (None, "default"):
            raise TaskError(f"a BEIR folder has no subtasks (got {subtask!r})")
        return load_beir_task(task, split=split or "test", main_metric=main_metric or "ndcg_at_10")
    if os.sep in task or task.startswith("."):
        raise TaskError(f"task folder {task!r} does not exist")
    return load_mteb_task(task, subtask, split=split, dataset_path=dataset_path, main_metric=main_metric)
