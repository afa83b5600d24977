"""The texts a result folder's traces refer to, kept beside them: ``texts.jsonl.gz``.

A trace names a query and a passage by id; the texts live in the task (a Hub dataset, a BEIR folder). So that
the report, and any later analysis, never needs the Hub again, the driver writes the texts of every judged query
and of every passage it judged — plus the relevant passages of those queries that the first stage missed — once
per result folder, one line per query or document, gzip-compressed. Every document appears once, however many
queries it was a candidate for.

Lines (JSON, one per line): a header ``{"type": "meta", ...}`` (task, source, dataset revision, counts), then
``{"type": "query", "id", "text", "instruction"?}`` in task order, then ``{"type": "doc", "id", "title"?,
"text"}`` sorted by id. ``title`` and ``text`` are kept apart as the dataset has them; :attr:`Texts.docs` joins
them as mteb 2.x hands a document to a model (``title + " " + text``). The gzip header carries no name and no
time, so the same texts always give the same bytes (the file's checksum is stable across rewrites).
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEXTS_FILE = "texts.jsonl.gz"


class TextsError(ValueError):
    """A texts file that cannot be read (truncated gzip, a line that is not a text record)."""


@dataclass
class Texts:
    """Query and passage texts by id, as the model saw them (the instruction kept apart from the query)."""

    queries: dict[str, str] = field(default_factory=dict)
    instructions: dict[str, str] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)  # mteb's document text: (title + " " + text).strip()
    meta: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.queries or self.docs)


def doc_text(title: str | None, text: str | None) -> str:
    """mteb 2.x's document text: ``(title + " " + text).strip()`` when a title is non-empty."""
    text = text or ""
    return f"{title} {text}".strip() if title else text.strip()


def texts_lines(
    queries: Iterable[Mapping[str, Any]], docs: Iterable[Mapping[str, Any]], meta: Mapping[str, Any]
) -> Iterable[str]:
    """The JSON lines of a texts file; ``queries``/``docs`` are rows with ``id``, ``text`` (+ instruction/title)."""
    q_rows = [_query_row(q) for q in queries]
    unique_docs = sorted({r["id"]: r for r in map(_doc_row, docs)}.values(), key=lambda r: r["id"])
    yield json.dumps({"type": "meta", **meta, "queries": len(q_rows), "docs": len(unique_docs)}, ensure_ascii=False)
    for row in q_rows:
        yield json.dumps(row, ensure_ascii=False)
    for row in unique_docs:
        yield json.dumps(row, ensure_ascii=False)


def _query_row(q: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"type": "query", "id": str(q["id"]), "text": _str(q.get("text"))}
    if q.get("instruction"):
        row["instruction"] = _str(q["instruction"])
    return row


def _doc_row(d: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"type": "doc", "id": str(d["id"])}
    if d.get("title"):
        row["title"] = _str(d["title"])
    row["text"] = _str(d.get("text"))
    return row


def _str(value: Any) -> str:
    """Text as a string; a conversation (list of turns) or other structure is kept as its JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def encode_texts(lines: Iterable[str]) -> bytes:
    """The gzip bytes of a texts file: no file name, mtime 0, so equal texts give equal bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        for line in lines:
            gz.write(line.encode("utf-8") + b"\n")
    return buf.getvalue()


def write_texts(
    path: str | os.PathLike[str],
    queries: Iterable[Mapping[str, Any]],
    docs: Iterable[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``texts.jsonl.gz`` through a temporary name and a rename (never half a file under the real name)."""
    out = Path(path)
    data = encode_texts(texts_lines(queries, docs, meta or {}))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def read_texts(folder_or_file: str | os.PathLike[str]) -> Texts:
    """The texts of a result folder (or of a ``texts.jsonl.gz`` path); empty :class:`Texts` when there is none."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / TEXTS_FILE
    if not path.is_file():
        return Texts()
    out = Texts()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                row = json.loads(line)
                kind = row.get("type") if isinstance(row, dict) else None
                if kind == "query":
                    out.queries[str(row["id"])] = str(row.get("text", ""))
                    if row.get("instruction"):
                        out.instructions[str(row["id"])] = str(row["instruction"])
                elif kind == "doc":
                    out.docs[str(row["id"])] = doc_text(row.get("title"), row.get("text"))
                elif kind == "meta":
                    out.meta = {k: v for k, v in row.items() if k != "type"}
                else:
                    raise TextsError(f"{path}: line {n} is not a text record (type {kind!r})")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TextsError(f"{path}: not a complete gzip file ({exc}); rewrite it with the run that made it") from None
    except (json.JSONDecodeError, KeyError) as exc:
        raise TextsError(f"{path}: malformed line ({exc})") from None
    return out
