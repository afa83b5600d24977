"""Local BEIR-layout folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) and qrels files.

Local folders are how rank1_eval runs without the Hub (the bundled DL19 subset, private collections, extra
judgement sets such as DL19's re-judged qrels). Each malformed input is reported with its file and line
number instead of being skipped: a silently dropped judgement changes every metric computed from it.

Soft problems (empty documents or queries) are reported as :class:`DatasetWarning` through
:func:`warnings.warn` *and* kept in :attr:`BeirData.warnings`, so a CLI can print them and tests can catch
them with ``pytest.warns``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Qrels = dict[str, dict[str, int]]

_HEADER_FIRST = {"query-id", "query_id", "queryid", "qid", "query", "topic"}
_HEADER_LAST = {"score", "relevance", "rel", "label", "grade", "judgement", "judgment"}
_MAX_EXAMPLES = 5


class DatasetError(ValueError):
    """A dataset folder or qrels file is unusable; the message names the file and line."""


class DatasetWarning(UserWarning):
    """Something in a dataset looks wrong but can be evaluated (e.g. empty documents)."""


@dataclass(frozen=True)
class BeirData:
    """One split of a BEIR-layout folder, fully validated."""

    corpus: dict[str, dict[str, str]]  # docid -> {"title": str, "text": str}
    queries: dict[str, str]
    qrels: Qrels
    instructions: dict[str, str] | None = None  # qid -> instruction, when queries carry "instruction"
    path: Path | None = None
    split: str = "test"
    warnings: tuple[str, ...] = field(default=())

    def doc_text(self, docid: str) -> str:
        """``"title text"`` (stripped), the way mteb 2.x hands documents to a reranker."""
        doc = self.corpus[docid]
        return f"{doc['title']} {doc['text']}".strip()

    def doc_texts(self) -> dict[str, str]:
        """All documents as plain strings (e.g. for :func:`rank1_eval.runs.bm25_run`)."""
        return {docid: self.doc_text(docid) for docid in self.corpus}

    @property
    def n_qrels(self) -> int:
        return sum(len(rels) for rels in self.qrels.values())


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def _examples(items: list[str]) -> str:
    shown = ", ".join(repr(item) for item in items[:_MAX_EXAMPLES])
    return shown + (", ..." if len(items) > _MAX_EXAMPLES else "")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` of non-blank lines, failing on the first non-UTF-8 line."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(
                    f"{path}: line {lineno}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
                ) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if line.strip():
                yield lineno, line.rstrip("\r\n")


def _read_jsonl(path: Path, what: str, fields: tuple[str, ...]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield ``(line, id, record)`` with a unique string ``_id`` and string ``fields`` (missing -> error)."""
    seen: dict[str, int] = {}
    for lineno, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}")
        if "_id" not in record:
            raise DatasetError(f"{path}: line {lineno}: {what} has no '_id' field")
        raw_id = record["_id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise DatasetError(f"{path}: line {lineno}: '_id' must be a string, got {raw_id!r}")
        ident = str(raw_id)
        if not ident.strip():
            raise DatasetError(f"{path}: line {lineno}: empty '_id'")
        if ident in seen:
            raise DatasetError(f"{path}: line {lineno}: duplicate {what} id {ident!r} (first on line {seen[ident]})")
        seen[ident] = lineno
        for name in fields:
            if name not in record:
                raise DatasetError(f"{path}: line {lineno}: {what} {ident!r} has no {name!r} field")
            if not isinstance(record[name], str):
                raise DatasetError(
                    f"{path}: line {lineno}: {what} {ident!r}: {name!r} must be a string, "
                    f"got {type(record[name]).__name__}"
                )
        yield lineno, ident, record


def _is_header(fields: list[str]) -> bool:
    return fields[0].strip().lower() in _HEADER_FIRST or fields[-1].strip().lower() in _HEADER_LAST


def read_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read relevance judgements: BEIR TSV ``query-id corpus-id score`` or TREC ``qid 0 docid rel``.

    The format is decided by the first data line (3 columns: BEIR, 4: TREC); lines with a tab are split on
    tabs (ids may then contain spaces), others on whitespace. An optional header line (``query-id ...``) is
    recognised by its column names and skipped. Scores must be integers (negative grades are kept).
    Wrong column counts, non-integer scores and duplicate ``(query, doc)`` pairs raise :class:`DatasetError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: qrels file not found")
    qrels: Qrels = {}
    first_seen: dict[tuple[str, str], int] = {}
    n_columns: int | None = None
    for lineno, line in _lines(path):
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if n_columns is None:
            if len(fields) not in (3, 4):
                raise DatasetError(
                    f"{path}: line {lineno}: expected 3 columns (query-id, corpus-id, score) or 4 "
                    f"(TREC: qid iter docid rel), got {len(fields)}"
                )
            n_columns = len(fields)
            if _is_header(fields):
                continue
        if len(fields) != n_columns:
            raise DatasetError(
                f"{path}: line {lineno}: expected {n_columns} columns like the first line, got {len(fields)}"
            )
        if n_columns == 3:
            qid, docid, score_text = fields
        else:
            qid, _iteration, docid, score_text = fields
        try:
            score = int(score_text)
        except ValueError:
            raise DatasetError(f"{path}: line {lineno}: score {score_text!r} is not an integer") from None
        if not qid or not docid:
            raise DatasetError(f"{path}: line {lineno}: empty query or doc id")
        key = (qid, docid)
        if key in first_seen:
            raise DatasetError(
                f"{path}: line {lineno}: duplicate judgement for query {qid!r} doc {docid!r} "
                f"(first on line {first_seen[key]})"
            )
        first_seen[key] = lineno
        qrels.setdefault(qid, {})[docid] = score
    if not qrels:
        raise DatasetError(f"{path}: no judgements in the qrels file")
    return qrels


def _listing(folder: Path) -> str:
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    return ", ".join(entries) if entries else "(empty folder)"


def load_beir_folder(path: str | os.PathLike[str], split: str = "test") -> BeirData:
    """Load and validate one split of a BEIR-layout folder.

    ``corpus.jsonl`` (``_id``, ``text``, optional ``title``), ``queries.jsonl`` (``_id``, ``text``, optional
    ``instruction``), ``qrels/<split>.tsv`` (see :func:`read_qrels`). Every qrels query must be in
    ``queries.jsonl`` and every judged doc in the corpus, else :class:`DatasetError` (counts + examples).
    Empty documents and queries raise a :class:`DatasetWarning` with their count.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: dataset folder not found")
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    missing = [p for p in (corpus_path, queries_path) if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{folder}: missing {', '.join(p.name for p in missing)} "
            "(BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv); "
            f"the folder has: {_listing(folder)}"
        )
    if not qrels_path.is_file():
        qrels_dir = folder / "qrels"
        splits = sorted(p.stem for p in qrels_dir.glob("*.tsv")) if qrels_dir.is_dir() else []
        raise DatasetError(
            f"{folder}: missing qrels/{split}.tsv; available splits: {', '.join(splits) or 'none'}; "
            f"the folder has: {_listing(folder)}"
        )

    notes: list[str] = []
    corpus: dict[str, dict[str, str]] = {}
    empty_docs: list[str] = []
    for lineno, docid, record in _read_jsonl(corpus_path, "document", ("text",)):
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise DatasetError(f"{corpus_path}: line {lineno}: document {docid!r}: 'title' must be a string")
        corpus[docid] = {"title": title, "text": record["text"]}
        if not title.strip() and not record["text"].strip():
            empty_docs.append(docid)
    if not corpus:
        raise DatasetError(f"{corpus_path}: the corpus is empty")
    if empty_docs:
        notes.append(
            f"{corpus_path}: {_plural(len(empty_docs), 'empty document')} (no title, no text), "
            f"e.g. {_examples(empty_docs)}"
        )

    queries: dict[str, str] = {}
    instructions: dict[str, str] = {}
    empty_queries: list[str] = []
    for lineno, qid, record in _read_jsonl(queries_path, "query", ("text",)):
        queries[qid] = record["text"]
        if not record["text"].strip():
            empty_queries.append(qid)
        if "instruction" in record:
            if not isinstance(record["instruction"], str):
                raise DatasetError(f"{queries_path}: line {lineno}: query {qid!r}: 'instruction' must be a string")
            instructions[qid] = record["instruction"]
    if not queries:
        raise DatasetError(f"{queries_path}: no queries")
    if empty_queries:
        notes.append(
            f"{queries_path}: {_plural(len(empty_queries), 'empty query', 'empty queries')}, "
            f"e.g. {_examples(empty_queries)}"
        )

    qrels = read_qrels(qrels_path)
    unknown_q = [qid for qid in qrels if qid not in queries]
    unknown_d = sorted({docid for rels in qrels.values() for docid in rels if docid not in corpus})
    problems = []
    if unknown_q:
        problems.append(f"{_plural(len(unknown_q), 'query id')} not in queries.jsonl, e.g. {_examples(unknown_q)}")
    if unknown_d:
        problems.append(f"{_plural(len(unknown_d), 'doc id')} not in corpus.jsonl, e.g. {_examples(unknown_d)}")
    if problems:
        raise DatasetError(f"{qrels_path}: qrels refer to unknown ids: " + "; ".join(problems))

    for note in notes:
        warnings.warn(note, DatasetWarning, stacklevel=2)
    return BeirData(
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        instructions=instructions or None,
        path=folder,
        split=split,
        warnings=tuple(notes),
    )
