"""Tasks: seed names (``NevIR default``, ``BrightRetrieval biology``, ...) or a BEIR folder -> a loaded mteb task.

Everything the model will see is decided here, before any model is loaded: the task's queries, corpus and
qrels, and the candidates each query is reranked over (the task's own ``top_ranked`` or a run file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rank1_eval.metrics import EvalRules, evaluation_qrels
from rank1_eval.records import Pair

log = logging.getLogger(__name__)

BEIR_TASKS = (
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
)
BRIGHT_DOMAINS = (
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
)

# seed task name -> valid subtasks (the first is the default); every task reranks a first stage (docs/rule.md §11).
SEED_TASKS: dict[str, tuple[str, ...]] = {
    "NevIR": ("default",),
    "mFollowIR": ("fas", "rus", "zho"),
    "mFollowIRCrossLingual": ("eng-fas", "eng-rus", "eng-zho"),
    "BrightRetrieval": BRIGHT_DOMAINS,
    **{name: ("default",) for name in BEIR_TASKS},
}
# Tasks reranked over a rank1 run file by default (docs/rule.md §11): BRIGHT's and BEIR's `top_ranked` is missing or
# the whole corpus; mFollowIR's is mteb's own candidate list, but the paper reranks the mE5-base top-100.
NEEDS_RUN_FILE = {"BrightRetrieval", "mFollowIR", "mFollowIRCrossLingual", *BEIR_TASKS}


DATA_ROOT_ENV = "RANK1_DATA_ROOT"
"""Env var naming a folder of local Hub copies laid out by repo id (``<root>/mteb/scifact``): ``--data-root``."""


class TaskError(ValueError):
    """A task that cannot be resolved or loaded; the message says what is missing."""


def query_group(main_score: str | None, qid: str) -> str | None:
    """The group a query is scored with, for metrics that need every member of a group (None: scored alone).

    NevIR's ``paired_accuracy`` pairs ``<key>_q1`` with ``<key>_q2`` (mteb groups by ``qid.split("_")[0]``);
    FollowIR-style ``p-MRR`` pairs ``<id>-og`` with ``<id>-changed``. A group with a member missing makes mteb
    fail after every pair was judged (KeyError in paired_accuracy, an empty frame in p-MRR).
    """
    if main_score == "paired_accuracy":
        return qid.split("_")[0]
    if main_score == "p-MRR":
        for suffix in ("-og", "-changed"):
            if qid.endswith(suffix):
                return qid[: -len(suffix)]
    return None


def _group_members(main_score: str | None, group: str) -> tuple[str, ...]:
    if main_score == "paired_accuracy":
        return (f"{group}_q1", f"{group}_q2")
    if main_score == "p-MRR":
        return (f"{group}-og", f"{group}-changed")
    return ()


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
    dataset_path: str | None = None  # the local Hub-layout copy the upstream loader read, if any
    # qid -> doc ids the task excludes from that query's candidates (BRIGHT v1.1 `excluded_ids`)
    excluded: dict[str, frozenset[str]] = field(default_factory=dict)

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

    @property
    def eval_rules(self) -> EvalRules:
        """How mteb scores this task (``ignore_identical_ids``); every metric of our own follows it."""
        return EvalRules.from_task(self.task)

    def eval_qrels(self) -> dict[str, dict[str, int]]:
        """The judgements of the queries mteb evaluates: the task's queries with at least one judgement."""
        return evaluation_qrels(self.qrels, self.query_ids())

    def set_candidates(self, ranking: Mapping[str, Sequence[str]]) -> None:
        """Replace the task's candidates (``top_ranked``) by a first-stage ranking (best first)."""
        self.data["top_ranked"] = {qid: list(docs) for qid, docs in ranking.items()}

    def group_of(self, qid: str) -> str | None:
        return query_group(self.main_metric_of_task, qid)

    @property
    def main_metric_of_task(self) -> str | None:
        """The task's own main score (mteb metadata): it decides whether queries are scored in groups."""
        return getattr(getattr(self.task, "metadata", None), "main_score", None)

    def limit_queries(self, n: int) -> int:
        """Keep the first ``n`` queries (task order) that have candidates, groups kept whole; returns the count.

        Queries scored in groups (NevIR's q1/q2, mFollowIR's og/changed) bring their partners along, so
        ``n = 3`` on NevIR keeps two whole pairs (4 queries): half a pair would crash mteb after every pair of
        the run was judged. Qrels and candidates follow the kept queries.
        """
        top = self.top_ranked or {}
        order = self.query_ids()
        keep = [q for q in order if q in top][:n]
        groups = {g for q in keep if (g := self.group_of(q)) is not None}
        if groups:
            keep_set = set(keep)
            keep = [q for q in order if q in keep_set or self.group_of(q) in groups]
        keep_set = set(keep)
        data = self.data
        data["queries"] = data["queries"].filter(lambda row: row["id"] in keep_set)
        data["relevant_docs"] = {q: d for q, d in data["relevant_docs"].items() if q in keep_set}
        data["top_ranked"] = {q: d for q, d in top.items() if q in keep_set}
        return len(keep)

    def check_groups(self) -> None:
        """Refuse, before any pair is judged, a query set with a group that misses a member mteb will look up."""
        main = self.main_metric_of_task
        evaluated = set(self.eval_qrels())
        groups = {g for q in evaluated if (g := query_group(main, q)) is not None}
        broken = sorted(
            f"{g} (missing {', '.join(m for m in _group_members(main, g) if m not in evaluated)})"
            for g in groups
            if any(m not in evaluated for m in _group_members(main, g))
        )
        if broken:
            shown = ", ".join(broken[:5]) + (", ..." if len(broken) > 5 else "")
            raise TaskError(
                f"{self.label}: {main} scores queries in groups, but {len(broken)} group(s) are incomplete among "
                f"the judged queries: {shown}; check the dataset (or the --limit-queries selection)"
            )

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
        """Every (query, candidate) pair with the texts mteb will hand the model (docs/rule.md §1)."""
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


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # NUL and other control characters; not \t \n \r


def odd_text_warning(pairs: Sequence[Pair]) -> str | None:
    """A warning with counts and examples when queries or passages to judge hold NUL or control characters.

    They reach the model (and texts.jsonl.gz) as they are: usually a broken export of the corpus, which the user
    should know about before reading the scores.
    """
    seen: set[tuple[str, str]] = set()
    found: dict[str, list[tuple[str, str]]] = {"query": [], "passage": []}
    nul = 0
    for p in pairs:
        query = (p.query or "") + (p.instruction or "")
        for kind, ident, text in (("query", p.qid, query), ("passage", p.docid, p.doc)):
            if (kind, ident) in seen:
                continue
            seen.add((kind, ident))
            hit = _CONTROL.search(text or "")
            if hit:
                found[kind].append((ident, text[max(0, hit.start() - 12) : hit.end() + 12]))
                nul += "\x00" in text
    if not any(found.values()):
        return None
    plural = {"query": "queries", "passage": "passages"}
    counts = " and ".join(f"{len(v)} {k if len(v) == 1 else plural[k]}" for k, v in found.items() if v)
    examples = "; ".join(f"{k} {i!r}: {t!r}" for k, v in found.items() for i, t in v[:2])
    return (
        f"{counts} contain NUL or control characters ({nul} of them NUL; e.g. {examples}): they reach the model "
        "and texts.jsonl.gz as they are — check the export of the corpus and queries"
    )


def mteb_doc_text(title: str | None, text: str) -> str:
    """mteb 2.x's document text: ``(title + " " + text).strip()`` when a title is non-empty, else ``text.strip()``."""
    return (title + " " + text).strip() if title else text.strip()


def valid_task_names() -> str:
    return ", ".join(sorted(SEED_TASKS)) + ", any mteb Retrieval/Reranking task, or a BEIR-style folder"


_DOWNLOAD_ERRORS = (
    "ConnectionError",
    "Timeout",
    "ReadTimeout",
    "ConnectTimeout",
    "TimeoutError",
    "OfflineModeIsEnabled",
    "LocalEntryNotFoundError",
    "HfHubHTTPError",
    "RepositoryNotFoundError",
    "RevisionNotFoundError",
    "GatedRepoError",
    "DatasetNotFoundError",
    "ConnectError",
    "TimeoutException",
    "HTTPError",
)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _loader_failure(exc: BaseException, what: str, local: bool) -> str:
    """One line for a failed ``load_data``: a download failure says so, anything else says what it is.

    A download failure (no network, HF_HUB_OFFLINE, an unknown repo or revision) ends with the --dataset-path
    hint. Anything else (a local copy with a missing config or column, a bug) is reported as its exception
    type and message, so a broken local copy is not mistaken for a network problem.
    """
    chain = _chain(exc)
    download = next((e for e in chain if type(e).__name__ in _DOWNLOAD_ERRORS), None)
    if download is not None and not local:
        reason = _first_line(download) or type(download).__name__
        hint = " (the Hugging Face Hub is unreachable or HF_HUB_OFFLINE=1: pass --dataset-path to a local copy)"
        return f"could not download {what}: {type(download).__name__}: {reason}{hint}"
    return f"loading {what} failed: {type(exc).__name__}: {_first_line(exc) or 'no message'}"


def get_mteb_task(name: str, subtask: str | None = None, *, split: str | None = None) -> tuple[Any, str, str]:
    """The mteb task object (data not loaded), its hf_subset and split."""
    from rank1_eval import mteb_compat

    if name in SEED_TASKS and subtask not in (None, "default") and subtask not in SEED_TASKS[name]:
        raise TaskError(f"unknown subtask {subtask!r} for {name}; valid: {', '.join(SEED_TASKS[name])}")
    try:
        task = mteb_compat.get_task(name)
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
    return mteb_compat.get_task(name, eval_splits=[split], hf_subsets=[subset]), subset, split


def resolve_dataset_path(task: Any, dataset_path: str | None, data_root: str | None) -> str | None:
    """The local Hub-layout copy to load: ``dataset_path``, else ``<data_root>/<Hub repo id>`` (None: the Hub)."""
    if dataset_path is not None:
        if not os.path.isdir(dataset_path):
            raise TaskError(f"--dataset-path {dataset_path} is not a folder (a local copy laid out like the Hub repo)")
        return str(dataset_path)
    root = data_root or os.environ.get(DATA_ROOT_ENV)
    if not root:
        return None
    repo = task.metadata.dataset["path"]
    candidate = Path(root) / repo
    if not candidate.is_dir():
        raise TaskError(
            f"no local copy of {repo!r} (task {task.metadata.name}) under the data root {root}: expected the "
            f"folder {candidate}, laid out like the Hub repo"
        )
    return str(candidate)


def folder_fingerprint(folder: Path) -> str:
    """A cheap identity of a local dataset copy: every file's relative path, size and mtime (dot-folders skipped)."""
    h = hashlib.sha256()
    files = (p for p in folder.rglob("*") if p.is_file())
    for path in sorted(f for f in files if not any(part.startswith(".") for part in f.relative_to(folder).parts)):
        st = path.stat()
        h.update(f"{path.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_safe_path(local: str) -> tuple[str, str]:
    """The path to hand ``datasets`` for a local copy, and the copy's fingerprint.

    ``datasets`` keys the cache of a local folder by the folder's *name* and its configs, not by its location or
    contents: two copies named ``BRIGHT`` (``xlangai/BRIGHT`` and ``mteb/BRIGHT``) or a copy edited in place
    would be served each other's stale Arrow cache. A symlink named ``<name>-<fingerprint>`` (next to the
    ``datasets`` cache) gives every distinct copy its own cache; without symlinks the folder is used as is.
    """
    import datasets

    folder = Path(local).resolve()
    fingerprint = folder_fingerprint(folder)
    links = Path(datasets.config.HF_DATASETS_CACHE) / "rank1_eval_local_copies"
    link = links / f"{folder.name}-{fingerprint}"
    try:
        links.mkdir(parents=True, exist_ok=True)
        if not (link.is_symlink() and link.resolve() == folder):
            tmp = links / f".{link.name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(folder, target_is_directory=True)
            os.replace(tmp, link)
        return str(link), fingerprint
    except OSError as exc:
        log.warning("cannot link %s into the datasets cache (%s): its cache is keyed by folder name only", folder, exc)
        return str(folder), fingerprint


def _narrow_subsets(task: Any, subset: str) -> None:
    """Load only the chosen subset: mteb's v1 loaders (BRIGHT, mFollowIR) read every language in the metadata.

    ``BrightRetrieval`` reads all 12 domains (over 1 GB of documents on the Hub) for any one of them; with the
    metadata narrowed to the chosen domain its own loader reads just that one. The loader code is unchanged.
    """
    langs = task.metadata.eval_langs
    if isinstance(langs, dict) and subset in langs and len(langs) > 1:
        task.metadata = task.metadata.model_copy(update={"eval_langs": {subset: langs[subset]}})


def _whole_corpus_exclusions(task: Any, split_data: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """BRIGHT v1.1's ``excluded_ids``: its loader sets each query's candidates to the corpus minus them."""
    if not type(task).__module__.endswith("bright_v1_1_retrieval"):
        return {}
    top = split_data.get("top_ranked")
    if not top:
        return {}
    corpus_ids = list(split_data["corpus"]["id"])
    corpus_set = set(corpus_ids)
    out = {}
    for qid, docs in top.items():
        if len(docs) < len(corpus_ids):
            out[str(qid)] = frozenset(corpus_set - set(docs))
    return out


def load_mteb_task(
    name: str,
    subtask: str | None = None,
    *,
    split: str | None = None,
    dataset_path: str | None = None,
    data_root: str | None = None,
    main_metric: str | None = None,
) -> LoadedTask:
    """Load an mteb task's data with mteb's own loader; ``dataset_path``/``data_root`` point it at a local copy.

    Tasks whose loader still fills mteb's v1 attributes (``BrightRetrieval``, the per-domain ``Bright*Retrieval``,
    ``mFollowIR``, ``mFollowIRCrossLingual``) are converted with mteb's own ``convert_v1_dataset_format_to_v2``,
    the conversion ``AbsTaskRetrieval.evaluate`` applies, so every task ends up in the same v2 shape.
    """
    task, subset, split = get_mteb_task(name, subtask, split=split)
    _narrow_subsets(task, subset)
    local = resolve_dataset_path(task, dataset_path, data_root)
    revision = task.metadata.dataset.get("revision")
    what = f"dataset {task.metadata.dataset['path']!r} (revision {revision}) of task {name}"
    if local is not None:
        linked, fingerprint = cache_safe_path(local)
        revision = f"local-{fingerprint}"  # provenance: which copy, as it was
        dataset = dict(task.metadata.dataset, path=linked, revision="local")
        task.metadata = task.metadata.model_copy(update={"dataset": dataset})
        what = f"local copy {local!r} of task {name}"
    try:
        task.load_data()
        task.convert_v1_dataset_format_to_v2(num_proc=None)
    except Exception as exc:  # datasets/hub/the task's own loader raise many types; re-raise one clear error
        raise TaskError(_loader_failure(exc, what, local is not None)) from exc
    split_data = (getattr(task, "dataset", None) or {}).get(subset, {}).get(split)
    if not split_data:
        raise TaskError(f"{what} has no data for subset {subset!r}, split {split!r} after loading")
    return LoadedTask(
        task=task,
        name=name,
        subtask=subtask if subtask not in (None, "default") else None,
        subset=subset,
        split=split,
        main_metric=main_metric or task.metadata.main_score,
        dataset_revision=revision,
        source="mteb",
        dataset_path=local,
        excluded=_whole_corpus_exclusions(task, split_data),
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

    from rank1_eval.mteb_compat import retrieval_task_classes

    AbsTaskRetrieval, TaskMetadata = retrieval_task_classes()  # noqa: N806 -- mteb's classes, under their names

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
    data_root: str | None = None,
    main_metric: str | None = None,
) -> LoadedTask:
    """A seed/mteb task name or a BEIR-style folder."""
    if os.path.isdir(task):
        if subtask not in (None, "default"):
            raise TaskError(f"a BEIR folder has no subtasks (got {subtask!r})")
        return load_beir_task(task, split=split or "test", main_metric=main_metric or "ndcg_at_10")
    if os.sep in task or task.startswith("."):
        raise TaskError(f"task folder {task!r} does not exist")
    return load_mteb_task(
        task, subtask, split=split, dataset_path=dataset_path, data_root=data_root, main_metric=main_metric
    )
