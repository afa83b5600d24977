"""The paper's tables as data: manifests, tables filled from result folders, ``reproduce`` and ``table``.

A manifest (``rank1_eval/data/tables/<name>.json``, shipped as package data) names, for every cell, the
task, subtask, split, first-stage run, metric and the scale the paper prints it in, and holds the paper's value
for every model it reports, transcribed from SPEC §5. The paper's printed averages are kept as printed; ours
are recomputed from our cells and flagged when cells are missing, because an average over fewer subsets is a
different number. A cell without a result folder stays missing: a zero would read as a (terrible) result.

Nothing here imports mteb, torch or matplotlib at import time: ``table`` on existing folders is instant.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rank1_eval.evaluate import safe_name

log = logging.getLogger(__name__)

TABLE_NAMES = ("bright", "nevir", "mfollowir-crosslingual", "mfollowir", "dl19", "beir", "awq")
MISSING = "—"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FIRST_STAGE_METRICS = {"ndcg_at_10": "ndcg_cut_10"}  # column metric -> what vs_first_stage measures


class TableError(ValueError):
    """A manifest or a table request that cannot be served; the message says which file or name."""


# ----------------------------------------------------------------------------------------------------
# Manifests
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a paper table: everything needed to produce and read one cell for any model."""

    key: str
    label: str
    task: str | None
    subtask: str | None
    split: str | None
    run_file: str | None  # "manifest": the rank1-run-files file of (task, subtask); None: the task's candidates
    metric: str | None  # key in summary["metrics"], or a dotted path into summary.json / mteb's scores
    scale: float  # printed = raw * scale (nDCG x100, mFollowIR nDCG@20 as 0-1)
    decimals: int
    signed: bool = False  # printed with a sign (p-MRR: +7.0)
    top_k: int = 100
    qrels: Mapping[str, str] = field(default_factory=dict)  # extra judgement sets for the run (NAME -> path)
    reproducible: bool = True
    result_match: str | None = None  # substring of the result folder of a local task whose path is not set

    @property
    def is_local(self) -> bool:
        """A BEIR-style folder rather than an mteb task name."""
        return bool(self.task) and (self.task.startswith("${") or os.sep in self.task or os.path.isdir(self.task))

    def run_key(self) -> tuple[Any, ...]:
        """Columns with equal keys are read from one driver run (mFollowIR nDCG@20 and p-MRR, DL19's three)."""
        return (self.task, self.subtask, self.split, self.run_file, self.top_k, tuple(sorted(self.qrels.items())))


@dataclass(frozen=True)
class Average:
    key: str
    label: str
    of: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One model (or first stage) of a paper table with its printed values."""

    key: str
    label: str
    checkpoint: str | None
    paper: Mapping[str, float]
    paper_averages: Mapping[str, float] = field(default_factory=dict)
    first_stage: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    number: int
    title: str
    source: str
    columns: tuple[Column, ...]
    averages: tuple[Average, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    placeholders: Mapping[str, str] = field(default_factory=dict)  # NAME -> what the user must supply
    path: Path | None = None

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise TableError(f"table {self.name} has no column {key!r}; columns: {', '.join(self.column_keys)}")

    def row(self, key: str) -> Row:
        for r in self.rows:
            if r.key == key:
                return r
        raise TableError(f"table {self.name} has no row {key!r}; rows: {', '.join(r.key for r in self.rows)}")

    @property
    def column_keys(self) -> list[str]:
        return [c.key for c in self.columns]

    def paper_mean(self, row: Row, average: Average) -> float | None:
        """Mean of the row's printed cells: set beside the printed average, which may differ (SPEC §5, BEIR)."""
        values = [row.paper[k] for k in average.of if row.paper.get(k) is not None]
        return sum(values) / len(values) if len(values) == len(average.of) and values else None


def tables_dir() -> Path:
    """The bundled paper-table manifests."""
    from rank1_eval._data import TABLES_DIR

    return TABLES_DIR


def table_names() -> dict[str, str]:
    """Every accepted name -> canonical name (the numbers work as aliases)."""
    names = {name: name for name in TABLE_NAMES}
    names.update({str(i): name for i, name in enumerate(TABLE_NAMES, start=1)})
    return names


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise TableError(f"{where}: missing {key!r}")
    return obj[key]


def _parse_column(raw: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> Column:
    spec = {**defaults, **raw}
    key = str(_require(spec, "key", where))
    here = f"{where}: column {key!r}"
    known = set(Column.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise TableError(f"{here}: unknown fields {sorted(unknown)}")
    scale = spec.get("scale", 1)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise TableError(f"{here}: scale must be a number, got {scale!r}")
    return Column(
        key=key,
        label=str(spec.get("label", key)),
        task=spec.get("task"),
        subtask=None if spec.get("subtask") in (None, "default") else spec["subtask"],
        split=spec.get("split"),
        run_file=spec.get("run_file"),
        metric=spec.get("metric"),
        scale=float(scale),
        decimals=int(spec.get("decimals", 1)),
        signed=bool(spec.get("signed", False)),
        top_k=int(spec.get("top_k", 100)),
        qrels=dict(spec.get("qrels") or {}),
        reproducible=bool(spec.get("reproducible", True)) and spec.get("task") is not None,
        result_match=spec.get("result_match"),
    )


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TableError(f"{where}: expected a number, got {value!r}")
    return float(value)


def parse_table(obj: Mapping[str, Any], path: Path | None = None) -> Table:
    """A manifest dict -> :class:`Table`, checking every key a cell refers to."""
    where = str(path or obj.get("name", "manifest"))
    defaults = obj.get("defaults", {})
    columns = tuple(_parse_column(c, defaults, where) for c in _require(obj, "columns", where))
    keys = [c.key for c in columns]
    if len(set(keys)) != len(keys):
        raise TableError(f"{where}: duplicate column keys")
    averages = tuple(
        Average(str(a["key"]), str(a.get("label", a["key"])), tuple(a["of"])) for a in obj.get("averages", [])
    )
    for a in averages:
        if bad := [k for k in a.of if k not in keys]:
            raise TableError(f"{where}: average {a.key!r} refers to unknown columns {bad}")
    rows = []
    for raw in _require(obj, "rows", where):
        rkey = str(_require(raw, "key", where))
        paper = {k: _number(v, f"{where}: row {rkey!r} column {k!r}") for k, v in raw.get("paper", {}).items()}
        if bad := [k for k in paper if k not in keys]:
            raise TableError(f"{where}: row {rkey!r} has values for unknown columns {bad}")
        avgs = {k: _number(v, f"{where}: row {rkey!r} average {k!r}") for k, v in raw.get("paper_averages", {}).items()}
        if bad := [k for k in avgs if k not in {a.key for a in averages}]:
            raise TableError(f"{where}: row {rkey!r} has unknown averages {bad}")
        rows.append(
            Row(
                key=rkey,
                label=str(raw.get("label", rkey)),
                checkpoint=raw.get("checkpoint"),
                paper={k: v for k, v in paper.items() if v is not None},
                paper_averages={k: v for k, v in avgs.items() if v is not None},
                first_stage=bool(raw.get("first_stage", False)),
            )
        )
    return Table(
        name=str(_require(obj, "name", where)),
        number=int(obj.get("number", 0)),
        title=str(obj.get("title", "")),
        source=str(obj.get("source", "")),
        columns=columns,
        averages=averages,
        rows=tuple(rows),
        notes=tuple(obj.get("notes", ())),
        placeholders=dict(obj.get("placeholders", {})),
        path=path,
    )


def load_table(name: str | os.PathLike[str]) -> Table:
    """A bundled manifest by name (``bright``) or number (``1``), or a manifest file of one's own."""
    text = str(name)
    if text.endswith(".json") or os.path.isfile(text):
        path = Path(text)
        if not path.is_file():
            raise TableError(f"table manifest {path} does not exist")
    else:
        canonical = table_names().get(text.lower())
        if canonical is None:
            valid = ", ".join(f"{n} ({i})" for i, n in enumerate(TABLE_NAMES, start=1))
            raise TableError(f"unknown table {text!r}; valid: {valid}, or a manifest .json file")
        path = tables_dir() / f"{canonical}.json"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    return parse_table(obj, path)


def substitute(value: str | None, placeholders: Mapping[str, str]) -> str | None:
    """``${NAME}`` -> the user's value (``--set NAME=...`` first, then the environment); unknown ones kept."""
    if value is None:
        return None

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        found = placeholders.get(name, os.environ.get(name))
        return found if found is not None else m.group(0)

    return _PLACEHOLDER.sub(repl, value)


def unresolved(value: str | None) -> list[str]:
    """Placeholder names still left in ``value`` (a run must not start with them)."""
    return _PLACEHOLDER.findall(value or "")


# ----------------------------------------------------------------------------------------------------
# Result folders -> cells
# ----------------------------------------------------------------------------------------------------


def model_folder_name(model: str) -> str:
    """The folder the driver writes a model's results to (the mteb meta name, made safe); no mteb import."""
    if os.path.isdir(model):
        name = f"local/{os.path.basename(os.path.normpath(model))}"
    elif "/" in model:
        name = model
    else:
        name = f"local/{model}"
    return safe_name(name)


def result_label(column: Column, placeholders: Mapping[str, str]) -> str | None:
    """``<Task>_<subtask>`` as the driver names the folder; None while a local path is still a placeholder."""
    from rank1_eval.tasks import _safe_task_name

    task = substitute(column.task, placeholders)
    if not task or unresolved(task):
        return None
    if column.is_local:
        return f"{_safe_task_name(Path(task))}_default"
    return f"{task}_{column.subtask or 'default'}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None


@dataclass
class Folder:
    """One result folder as the table reads it: summary.json and the matching mteb score entry."""

    path: Path
    summary: dict[str, Any]
    scores: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> Folder | None:
        from rank1_eval.outputs import ResultFolderError, check_result_folder

        summary_path = path / "summary.json"
        if not summary_path.is_file():
            return None
        try:  # whole, not truncated or mixed with another run (large files: checked by size)
            summary = check_result_folder(path, hash_limit=4 * 2**20)
        except ResultFolderError as exc:
            raise TableError(str(exc)) from None
        scores: dict[str, Any] = {}
        result_path = path / "mteb_result.json"
        if result_path.is_file():
            result = _read_json(result_path)
            prov = summary.get("provenance", {})
            entries = result.get("scores", {}).get(prov.get("split"), [])
            if not entries:  # a split we cannot name: take the only one there is
                splits = list(result.get("scores", {}).values())
                entries = splits[0] if len(splits) == 1 else []
            subset = prov.get("subset")
            matching = [e for e in entries if e.get("hf_subset") in (subset, None)] or entries[:1]
            scores = matching[0] if matching else {}
        return cls(path, summary, scores)


def _walk(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def metric_value(folder: Folder, metric: str) -> float | None:
    """``metric`` from summary["metrics"], else a dotted path in summary.json, else in mteb's score entry."""
    metrics = folder.summary.get("metrics", {})
    if metric in metrics:
        return _finite(metrics[metric])
    found = _walk(folder.summary, metric)
    if found is None:
        found = _walk(folder.scores, metric)
    return _finite(found)


def first_stage_value(folder: Folder, metric: str) -> float | None:
    """The first stage's value of ``metric`` as the reranked run recorded it (``summary["vs_first_stage"]``)."""
    record = folder.summary.get("vs_first_stage") or {}
    if record.get("metric") != _FIRST_STAGE_METRICS.get(metric):
        return None
    return _finite(record.get("mean_b"))


@dataclass
class Cell:
    column: Column
    paper: float | None
    ours: float | None  # printed units (raw * scale)
    folder: Path | None = None
    note: str | None = None

    @property
    def delta(self) -> float | None:
        return None if self.paper is None or self.ours is None else self.ours - self.paper


@dataclass
class AverageCell:
    average: Average
    paper: float | None  # as printed
    paper_mean: float | None  # mean of the printed cells
    ours: float | None  # mean of our cells present
    n_ours: int
    n_total: int

    @property
    def complete(self) -> bool:
        return self.n_ours == self.n_total

    @property
    def delta(self) -> float | None:
        return None if self.paper is None or self.ours is None or not self.complete else self.ours - self.paper


@dataclass
class RowResult:
    key: str
    label: str
    checkpoint: str | None
    first_stage: bool
    cells: dict[str, Cell]
    averages: dict[str, AverageCell]
    model_folder: str | None = None  # the results folder its cells were read from

    @property
    def n_ours(self) -> int:
        return sum(c.ours is not None for c in self.cells.values())


@dataclass
class TableResult:
    table: Table
    rows: list[RowResult]
    mode: str  # "paper" or "results"
    results_dir: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table.name,
            "number": self.table.number,
            "title": self.table.title,
            "mode": self.mode,
            "results_dir": str(self.results_dir) if self.results_dir else None,
            "rows": [
                {
                    "key": r.key,
                    "label": r.label,
                    "checkpoint": r.checkpoint,
                    "first_stage": r.first_stage,
                    "model_folder": r.model_folder,
                    "cells": {
                        k: {
                            "paper": c.paper,
                            "ours": c.ours,
                            "delta": c.delta,
                            "metric": c.column.metric,
                            "scale": c.column.scale,
                            "folder": str(c.folder) if c.folder else None,
                            "note": c.note,
                        }
                        for k, c in r.cells.items()
                    },
                    "averages": {
                        k: {
                            "paper": a.paper,
                            "paper_mean_of_cells": a.paper_mean,
                            "ours": a.ours,
                            "ours_cells": a.n_ours,
                            "cells": a.n_total,
                            "delta": a.delta,
                        }
                        for k, a in r.averages.items()
                    },
                }
                for r in self.rows
            ],
        }


def _averages(table: Table, row: Row | None, cells: Mapping[str, Cell]) -> dict[str, AverageCell]:
    out = {}
    for a in table.averages:
        ours = [cells[k].ours for k in a.of if cells[k].ours is not None]
        out[a.key] = AverageCell(
            average=a,
            paper=row.paper_averages.get(a.key) if row else None,
            paper_mean=table.paper_mean(row, a) if row else None,
            ours=sum(ours) / len(ours) if ours else None,
            n_ours=len(ours),
            n_total=len(a.of),
        )
    return out


def _paper_row(table: Table, row: Row) -> RowResult:
    cells = {c.key: Cell(c, row.paper.get(c.key), None) for c in table.columns}
    return RowResult(row.key, row.label, row.checkpoint, row.first_stage, cells, _averages(table, row, cells))


def paper_table(table: Table | str) -> TableResult:
    """The paper's own table: every row, paper values only."""
    table = table if isinstance(table, Table) else load_table(table)
    return TableResult(table, [_paper_row(table, r) for r in table.rows], "paper")


def _find_folder(column: Column, model_dir: Path, placeholders: Mapping[str, str]) -> tuple[Folder | None, str | None]:
    """The result folder of one cell, and a note when something about it is off."""
    label = result_label(column, placeholders)
    if label is None:  # a local task whose path is a placeholder: look for the one folder that fits
        if not column.result_match or not model_dir.is_dir():
            return None, None
        hits = [
            p
            for p in sorted(model_dir.iterdir())
            if (p / "summary.json").is_file()
            and column.result_match.lower() in p.name.lower()
            and p.name.endswith("Local_default")
        ]
        if len(hits) != 1:
            note = f"{len(hits)} folders match {column.result_match!r}; set the task path" if hits else None
            return None, note
        path = hits[0]
    else:
        path = model_dir / label
    folder = Folder.read(path)
    if folder is None:
        return None, None
    prov = folder.summary.get("provenance", {})
    if column.split and prov.get("split") not in (None, column.split):
        return None, f"{path.name} holds split {prov.get('split')!r}, not {column.split!r}"
    note = None
    if prov.get("limit_queries") is not None:
        note = f"partial run (--limit-queries {prov['limit_queries']})"
    elif prov.get("top_k") not in (None, column.top_k):
        note = f"top_k {prov.get('top_k')} (paper: {column.top_k})"
    return folder, note


def _fill(
    table: Table,
    row: Row | None,
    model_dir: Path,
    placeholders: Mapping[str, str],
    *,
    key: str,
    label: str,
    checkpoint: str | None,
    first_stage: bool = False,
) -> RowResult:
    cells: dict[str, Cell] = {}
    for column in table.columns:
        paper = row.paper.get(column.key) if row else None
        if not column.reproducible or not column.metric:
            cells[column.key] = Cell(column, paper, None, note="not measured by rank1_eval")
            continue
        folder, note = _find_folder(column, model_dir, placeholders)
        read = first_stage_value if first_stage else metric_value
        raw = read(folder, column.metric) if folder is not None else None
        if folder is not None and raw is None and note is None:
            note = "first stage not recorded" if first_stage else f"{column.metric} not in {folder.path.name}"
        ours = raw * column.scale if raw is not None else None
        cells[column.key] = Cell(column, paper, ours, folder.path if folder else None, note)
    return RowResult(key, label, checkpoint, first_stage, cells, _averages(table, row, cells), model_dir.name)


def table_from_results(
    table: Table | str,
    results_dir: str | os.PathLike[str],
    model: str | None = None,
    *,
    row: str | None = None,
    placeholders: Mapping[str, str] | None = None,
) -> TableResult:
    """Fill a table from result folders ``results_dir/<safe model>/<Task>_<subtask>/`` without running anything.

    ``model``: a checkpoint id, a local model path or a folder name under ``results_dir``; without it, every
    row whose checkpoint has a folder is filled. ``row`` says which paper row our numbers stand against when
    the model is not one of the table's checkpoints. First-stage rows are filled from the first stage's
    nDCG@10 that each reranked run records (``vs_first_stage``).
    """
    table = table if isinstance(table, Table) else load_table(table)
    results = Path(results_dir)
    if not results.is_dir():
        raise TableError(f"results folder {results} does not exist")
    subs = dict(placeholders or {})
    targets: list[tuple[Row | None, Path, str, str, str | None]] = []
    if model is not None:
        name = model_folder_name(model)
        model_dir = results / name
        if not model_dir.is_dir() and (results / model).is_dir():
            model_dir, name = results / model, model
        if not model_dir.is_dir():
            have = sorted(p.name for p in results.iterdir() if p.is_dir())
            looked = model if "__" in model and "/" not in model else name  # a folder name is not made safe twice
            raise TableError(f"no results for model {model!r} under {results} (looked for {looked}/); have: {have}")
        if row is not None:  # a model set against a chosen paper row
            chosen = table.row(row)
            targets.append((chosen, model_dir, "ours", f"{model} (vs {chosen.label})", model))
        else:
            matched = next(
                (r for r in table.rows if r.checkpoint and (r.checkpoint == model or safe_name(r.checkpoint) == name)),
                None,
            )
            if matched is not None:
                targets.append((matched, model_dir, matched.key, matched.label, matched.checkpoint))
            else:
                targets.append((None, model_dir, "ours", model, model))
    else:
        for r in table.rows:
            if r.checkpoint and (results / safe_name(r.checkpoint)).is_dir():
                targets.append((r, results / safe_name(r.checkpoint), r.key, r.label, r.checkpoint))
        if not targets:
            raise TableError(
                f"no result folders for any checkpoint of table {table.name} under {results}; pass --model "
                "(a model id, local model path or folder name)"
            )
    rows: list[RowResult] = []
    for r in table.rows:
        if not r.first_stage:
            continue
        # the first stage as recorded beside the first reranked model that has it
        candidates = [
            _fill(table, r, d, subs, key=r.key, label=r.label, checkpoint=None, first_stage=True)
            for _, d, *_ in targets
        ]
        rows.append(next((c for c in candidates if c.n_ours), candidates[0]))
    rows += [_fill(table, r, d, subs, key=k, label=lab, checkpoint=ck) for r, d, k, lab, ck in targets]
    return TableResult(table, rows, "results", results)


# ----------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------


def fmt(value: float | None, decimals: int, signed: bool = False) -> str:
    """A value as the paper prints it; missing is a dash, never 0."""
    if value is None:
        return MISSING
    if signed:
        return f"{value:+.{decimals}f}"
    return f"{value:.{decimals}f}"


def _delta(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:+.{decimals}f}"


def _avg_decimals(table: Table, average: Average) -> tuple[int, bool]:
    col = table.column(average.of[0])
    return col.decimals, col.signed


def _paper_avg_text(table: Table, a: AverageCell) -> tuple[str, bool]:
    """The printed average, and whether it disagrees with the mean of the printed cells (beyond rounding)."""
    d, signed = _avg_decimals(table, a.average)
    text = fmt(a.paper, d, signed)
    off = a.paper is not None and a.paper_mean is not None and abs(a.paper - a.paper_mean) > 10**-d + 1e-9
    return text, off


def _ours_avg_text(table: Table, a: AverageCell) -> str:
    d, signed = _avg_decimals(table, a.average)
    if a.ours is None:
        return MISSING
    text = fmt(a.ours, d, signed)
    return text if a.complete else f"{text}* ({a.n_ours}/{a.n_total})"


@dataclass
class _Grid:
    """The table as rows of strings, shared by Markdown, LaTeX and the console."""

    header: list[str]
    lines: list[list[str]]
    footnotes: list[str]


def _grid(result: TableResult) -> _Grid:
    table = result.table
    header = ["Model"] + ([] if result.mode == "paper" else [""]) + [c.label for c in table.columns]
    header += [a.label for a in table.averages]
    lines: list[list[str]] = []
    foot: list[str] = []
    off_rows: list[str] = []
    starred = False
    for r in result.rows:
        paper = [fmt(c.paper, c.column.decimals, c.column.signed) for c in r.cells.values()]
        avg_texts = []
        for a in r.averages.values():
            text, off = _paper_avg_text(table, a)
            if off:
                d, _ = _avg_decimals(table, a.average)
                text += "†"
                off_rows.append(
                    f"{r.label} {a.average.label}: printed {fmt(a.paper, d)}, mean of cells {fmt(a.paper_mean, d)}"
                )
            avg_texts.append(text)
        if result.mode == "paper":
            lines.append([r.label, *paper, *avg_texts])
            continue
        ours = [fmt(c.ours, c.column.decimals, c.column.signed) for c in r.cells.values()]
        ours_avg = [_ours_avg_text(table, a) for a in r.averages.values()]
        starred |= any(a.ours is not None and not a.complete for a in r.averages.values())
        delta = [_delta(c.delta, c.column.decimals) for c in r.cells.values()]
        delta += [_delta(a.delta, _avg_decimals(table, a.average)[0]) for a in r.averages.values()]
        lines.append([r.label, "paper", *paper, *avg_texts])
        lines.append(["", "ours", *ours, *ours_avg])
        lines.append(["", "Δ", *delta])
        notes: dict[str, list[str]] = {}
        for c in r.cells.values():
            if c.note and (c.ours is not None or c.folder is not None or "folders match" in c.note):
                notes.setdefault(c.note, []).append(c.column.label)
        for note, labels in notes.items():
            where = "all cells" if len(labels) == len(r.cells) else ", ".join(labels)
            foot.append(f"{r.label} ({where}): {note}")
    if off_rows:
        foot.insert(
            0, "† the paper's printed average differs from the mean of its printed cells: " + "; ".join(off_rows)
        )
    if starred:
        foot.append("* our average over the cells we have (n/N): not comparable with the paper's average")
    if result.mode == "results":
        foot.append(f"{MISSING} missing (no result folder or metric); Δ = ours − paper")
    return _Grid(header, lines, foot)


def _scale_note(table: Table) -> str:
    parts = []
    for c in table.columns:
        if not c.metric:
            continue
        parts.append(f"{c.metric} {_unit(c.scale)}")
    return ", ".join(dict.fromkeys(parts))


def render_markdown(result: TableResult) -> str:
    """Paper / ours / Δ per cell as a GitHub Markdown table (paper mode: the paper's lines only)."""
    table = result.table
    g = _grid(result)
    out = [f"**Table {table.number} ({table.name}) — {table.title}**", ""]
    if result.mode == "results":
        out += [f"Results: `{result.results_dir}`; scales: {_scale_note(table)}.", ""]
    n_text = 2 if result.mode == "results" else 1
    out.append("| " + " | ".join(g.header) + " |")
    out.append("|" + "|".join([":--"] * n_text + ["--:"] * (len(g.header) - n_text)) + "|")
    for line in g.lines:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |")
    if g.footnotes:
        out.append("")
        out += [f"- {f}" for f in g.footnotes]
    return "\n".join(out) + "\n"


def render_text(result: TableResult) -> str:
    """An aligned plain-text version for the terminal."""
    g = _grid(result)
    widths = [max(len(h), *(len(line[i]) for line in g.lines)) if g.lines else len(h) for i, h in enumerate(g.header)]
    n_text = 2 if result.mode == "results" else 1
    lines = [
        "  ".join(c.ljust(w) if i < n_text else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [g.header, *g.lines]
    ]
    return (
        "\n".join([f"Table {result.table.number} ({result.table.name}): {result.table.title}", *lines, *g.footnotes])
        + "\n"
    )


_LATEX_SPECIAL = {
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """Labels and notes as LaTeX text (the table's own symbols become math)."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("Δ", r"$\Delta$").replace("†", r"$^\dagger$").replace("—", "--").replace("−", "-")


def _latex_cell(cell: str) -> str:
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", cell):
        return f"${cell}$"
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)(\*|†)(.*)", cell)
    if m:
        mark = "^*" if m.group(2) == "*" else r"^\dagger"
        return f"${m.group(1)}{mark}${latex_escape(m.group(3))}"
    return latex_escape(cell)


def render_latex(result: TableResult) -> str:
    """A booktabs ``tabular`` with the same lines as the Markdown table."""
    g = _grid(result)
    n_text = 2 if result.mode == "results" else 1
    spec = "l" * n_text + "r" * (len(g.header) - n_text)
    out = [
        f"% Table {result.table.number} ({result.table.name}): {result.table.title}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in g.header) + r" \\",
        r"\midrule",
    ]
    for i, line in enumerate(g.lines):
        if result.mode == "results" and i and i % 3 == 0:
            out.append(r"\midrule")
        out.append(" & ".join(_latex_cell(c) for c in line) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {latex_escape(f)}" for f in g.footnotes]
    return "\n".join(out) + "\n"


CSV_FIELDS = (
    "table", "row", "label", "checkpoint", "kind", "column", "column_label", "task", "subtask", "split", "metric",
    "scale", "paper", "paper_mean_of_cells", "ours", "ours_cells", "delta", "folder", "note",
)  # fmt: skip


def render_csv(result: TableResult) -> str:
    """Long format, one line per (row, cell or average): easy to diff, filter and plot."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n", restval="")
    w.writeheader()

    def num(v: float | None) -> str:
        return "" if v is None else repr(round(v, 10))

    for r in result.rows:
        base = {"table": result.table.name, "row": r.key, "label": r.label, "checkpoint": r.checkpoint or ""}
        for c in r.cells.values():
            col = c.column
            w.writerow({
                **base, "kind": "cell", "column": col.key, "column_label": col.label, "task": col.task or "",
                "subtask": col.subtask or "", "split": col.split or "", "metric": col.metric or "",
                "scale": f"{col.scale:g}", "paper": num(c.paper), "ours": num(c.ours), "delta": num(c.delta),
                "folder": c.folder or "", "note": c.note or "",
            })  # fmt: skip
        for a in r.averages.values():
            w.writerow({
                **base, "kind": "average", "column": a.average.key, "column_label": a.average.label,
                "paper": num(a.paper), "paper_mean_of_cells": num(a.paper_mean), "ours": num(a.ours),
                "ours_cells": f"{a.n_ours}/{a.n_total}", "delta": num(a.delta),
            })  # fmt: skip
    return buf.getvalue()


def _unit(scale: float) -> str:
    return "×100" if scale == 100 else ("0–1" if scale == 1 else f"×{scale:g}")


def plot_png(result: TableResult, path: str | os.PathLike[str]) -> Path:
    """Bars of ours vs paper per subset (and average), one panel per row and printed scale (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table
    panels: dict[float, list[str]] = {}  # scale -> column keys, then the averages wholly inside the panel
    for c in table.columns:
        if c.reproducible and c.metric:
            panels.setdefault(c.scale, []).append(c.key)
    for a in table.averages:
        scales = {table.column(k).scale for k in a.of}
        if len(scales) == 1 and (scale := scales.pop()) in panels:
            panels[scale].append(a.key)
    rows = [r for r in result.rows if result.mode == "paper" or r.n_ours] or result.rows
    widest = max((len(v) for v in panels.values()), default=1)
    width = min(20.0, max(6.0, 1.2 + 0.55 * sum(len(v) for v in panels.values())))
    fig, axes = plt.subplots(
        max(1, len(rows)), max(1, len(panels)), figsize=(width, 3.4 * max(1, len(rows))), squeeze=False,
        gridspec_kw={"width_ratios": [max(1, len(v)) for v in panels.values()] or [widest]},
    )  # fmt: skip
    for i, r in enumerate(rows):
        for j, (scale, keys) in enumerate(panels.items()):
            ax = axes[i][j]
            labels, paper, ours = [], [], []
            for k in keys:
                if k in r.cells:
                    labels.append(r.cells[k].column.label)
                    paper.append(r.cells[k].paper)
                    ours.append(r.cells[k].ours)
                else:
                    avg = r.averages[k]
                    labels.append(avg.average.label)
                    paper.append(avg.paper)
                    ours.append(avg.ours if avg.complete else None)
            xs = list(range(len(keys)))
            bar_w = 0.4 if result.mode == "results" else 0.6
            shift = 0.2 if result.mode == "results" else 0.0
            ax.bar([x - shift for x in xs], [v or 0 for v in paper], bar_w, label="paper", color="#9aa5b1")
            if result.mode == "results":
                ax.bar([x + shift for x in xs], [v or 0 for v in ours], bar_w, label="ours", color="#2b6cb0")
                for x, v in zip(xs, ours, strict=True):
                    if v is None:
                        ax.text(x + shift, 0, "n/a", ha="center", va="bottom", fontsize=7, color="#b00020")
            ax.set_xticks(xs)
            ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{r.label} ({_unit(scale)})", fontsize=9)
            ax.axhline(0, color="black", linewidth=0.5)
            if j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"Table {table.number} ({table.name}): {'paper' if result.mode == 'paper' else 'ours vs paper'}")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_table_files(result: TableResult, out_dir: str | os.PathLike[str], stem: str | None = None) -> dict[str, Path]:
    """``<stem>.md``, ``.csv``, ``.tex``, ``.json`` and ``.png`` under ``out_dir``."""
    from rank1_eval.outputs import atomic_open

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or result.table.name
    files = {}
    for ext, text in (
        ("md", render_markdown(result)),
        ("csv", render_csv(result)),
        ("tex", render_latex(result)),
        ("json", json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"),
    ):
        path = out / f"{stem}.{ext}"
        with atomic_open(path) as f:
            f.write(text)
        files[ext] = path
    files["png"] = plot_png(result, out / f"{stem}.png")
    return files


# ----------------------------------------------------------------------------------------------------
# Reproduce
# ----------------------------------------------------------------------------------------------------


@dataclass
class CellRun:
    """One driver run; it fills every column listed in ``columns``."""

    columns: list[str]
    task: str
    subtask: str | None
    split: str | None
    run_file: str | None
    top_k: int
    qrels: dict[str, str]


def cell_runs(
    table: Table, placeholders: Mapping[str, str] | None = None, cells: Sequence[str] | None = None
) -> list[CellRun]:
    """The distinct driver runs a table needs for one model (placeholders substituted, checked)."""
    subs = dict(placeholders or {})
    wanted = set(cells) if cells else None
    if wanted is not None and (bad := wanted - set(table.column_keys)):
        raise TableError(f"table {table.name} has no columns {sorted(bad)}; columns: {', '.join(table.column_keys)}")
    runs: dict[tuple[Any, ...], CellRun] = {}
    missing: set[str] = set()
    for c in table.columns:
        if not c.reproducible or (wanted is not None and c.key not in wanted):
            continue
        task = substitute(c.task, subs) or ""
        run_file = substitute(c.run_file, subs)
        qrels = {k: substitute(v, subs) or "" for k, v in c.qrels.items()}
        for value in (task, run_file, *qrels.values()):
            missing.update(unresolved(value))
        key = c.run_key()
        if key in runs:
            runs[key].columns.append(c.key)
        else:
            runs[key] = CellRun([c.key], task, c.subtask, c.split, run_file, c.top_k, qrels)
    if missing:
        described = "; ".join(f"{n}: {table.placeholders.get(n, '(no description)')}" for n in sorted(missing))
        raise TableError(
            f"table {table.name} needs local paths: {described}. Pass them with --set NAME=PATH (or set the "
            "environment variables of the same names)"
        )
    return list(runs.values())


def _resolve_run_file(run: CellRun) -> str | None:
    if run.run_file == "manifest":
        from rank1_eval.runs import fetch_run_file

        return str(fetch_run_file(run.task, run.subtask))
    return run.run_file


@dataclass
class Reproduction:
    result: TableResult
    files: dict[str, Path]
    summaries: dict[str, dict[str, Any]]  # run label -> summary
    failures: dict[str, str]  # run label -> one-line reason


def reproduce(
    table: Table | str,
    model: Any,
    *,
    output_dir: str | os.PathLike[str] = "results",
    store: str | os.PathLike[str] | None = None,
    top_k: int | None = None,
    limit_queries: int | None = None,
    cells: Sequence[str] | None = None,
    placeholders: Mapping[str, str] | None = None,
    row: str | None = None,
    skip_existing: bool = False,
    progress: bool = True,
    command_line: Sequence[str] | None = None,
) -> Reproduction:
    """Run (or resume through the store) every cell ``model`` needs, with one loaded model, then write the table.

    ``model`` is a :class:`rank1_eval.rank1` (or a mapping of its constructor arguments). A cell that fails
    on bad input (no dataset, no run file) is reported and skipped; the others still run. Outputs:
    ``output_dir/<safe model>/<Task>_<subtask>/`` per run and ``output_dir/tables/<table>__<safe model>.*``.
    """
    from rank1_eval.cli import _user_errors
    from rank1_eval.evaluate import RunOptions, evaluate, prepare

    table = table if isinstance(table, Table) else load_table(table)
    subs = dict(placeholders or {})
    runs = cell_runs(table, subs, cells)  # placeholders checked before a model loads
    owned = isinstance(model, Mapping)
    if owned:
        from rank1_eval.model import rank1

        model = rank1(**model)
    out_root = Path(output_dir)
    name = model.mteb_model_meta.name
    summaries: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    try:
        for run in runs:
            label = f"{run.task}{'/' + run.subtask if run.subtask else ''}"
            if skip_existing:
                col = table.column(run.columns[0])
                folder_label = result_label(col, subs)
                if folder_label and _whole(out_root / safe_name(name) / folder_label):
                    log.info("%s: result folder exists, skipped", label)
                    continue
            try:
                opts = RunOptions(
                    task=run.task,
                    subtask=run.subtask,
                    run_file=_resolve_run_file(run),
                    top_k=top_k or run.top_k,
                    split=run.split,
                    qrels=run.qrels,
                    output_dir=out_root,
                    store=Path(store) if store else None,
                    limit_queries=limit_queries,
                    progress=progress,
                    command_line=list(command_line or sys.argv),
                )
                prepared = prepare(opts, name)
                summaries[label] = evaluate(model, prepared, opts)
            except _user_errors() as exc:
                failures[label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("%s: %s", label, failures[label])
            except Exception as exc:  # one broken cell (e.g. a Hub download inside mteb) must not end the table
                failures[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.exception("%s failed; the other cells go on (its judgements are in the store)", label)
    finally:
        if owned:
            model.close()
    (out_root / safe_name(name)).mkdir(parents=True, exist_ok=True)
    result = table_from_results(table, out_root, safe_name(name), row=row, placeholders=subs)
    files = write_table_files(result, out_root / "tables", f"{table.name}__{safe_name(name)}")
    return Reproduction(result, files, summaries, failures)


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


def _whole(folder: Path) -> bool:
    """A result folder that exists and passes its manifest check (a damaged one is rebuilt, not skipped)."""
    from rank1_eval.outputs import ResultFolderError, check_result_folder

    if not (folder / "summary.json").is_file():
        return False
    try:
        check_result_folder(folder)
    except ResultFolderError as exc:
        log.warning("%s; rebuilding it", exc)
        return False
    return True


def _set_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--set takes NAME=VALUE")
    name, path = value.split("=", 1)
    return name.strip(), path


def _print(result: TableResult, fmt_name: str) -> None:
    render = {"md": render_markdown, "csv": render_csv, "tex": render_latex, "text": render_text}
    if fmt_name == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render[fmt_name](result), end="")


def cmd_table(args: argparse.Namespace) -> int:
    """``rank1-eval table``: render a table; loads no model."""
    placeholders = dict(args.set)
    if args.paper:
        result = paper_table(args.table)
    else:
        if args.results is None:
            raise TableError("pass --results DIR (result folders) or --paper (the paper's own table)")
        result = table_from_results(args.table, args.results, args.model, row=args.row, placeholders=placeholders)
    _print(result, args.format)
    if args.out:
        stem = result.table.name
        if not args.paper:
            stem += f"__{model_folder_name(args.model) if args.model else 'all'}"
        files = write_table_files(result, args.out, stem)
        print("wrote " + ", ".join(str(p) for p in files.values()), file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``rank1-eval reproduce``: exit 1 when a cell failed, so scripts notice an incomplete table."""
    from rank1_eval.cli import _quiet_libraries, build_model

    table = load_table(args.table)
    cell_runs(table, dict(args.set), args.cells)  # fail on missing paths before a model loads
    _quiet_libraries()
    model = build_model(args)
    try:
        rep = reproduce(
            table,
            model,
            output_dir=args.output_dir,
            store=args.store,
            top_k=args.top_k,
            limit_queries=args.limit_queries,
            cells=args.cells,
            placeholders=dict(args.set),
            row=args.row,
            skip_existing=args.skip_existing,
            progress=not args.no_progress,
            command_line=["rank1-eval", *sys.argv[1:]],
        )
    finally:
        model.close()
    print(render_markdown(rep.result), end="")
    print("wrote " + ", ".join(str(p) for p in rep.files.values()))
    for label, reason in rep.failures.items():
        print(f"rank1-eval: cell {label} failed: {reason}", file=sys.stderr)
    from rank1_eval.cli import EXIT_FAILED_PAIRS, failed_pairs_exit

    failed_pairs = [failed_pairs_exit(s, args.allow_failed) for s in rep.summaries.values()]  # a line per cell
    return 1 if rep.failures else EXIT_FAILED_PAIRS if any(failed_pairs) else 0


def _cells_arg(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def add_table_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``table`` subcommand (wired into ``rank1_eval.cli.build_parser``)."""
    valid = ", ".join(f"{n} ({i})" for i, n in enumerate(TABLE_NAMES, start=1))
    p = sub.add_parser("table", help="a paper table filled from existing result folders (or the paper's own)")
    p.add_argument("table", help=f"{valid}, or a manifest .json")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--results", type=Path, default=None, help="the --output-dir of earlier runs")
    src.add_argument("--paper", action="store_true", help="print the paper's own table")
    p.add_argument("--model", default=None, help="model id, local model path or folder name under --results")
    p.add_argument("--row", default=None, help="paper row to compare against (for a model outside the paper)")
    p.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="NAME=PATH",
        help="value of a manifest placeholder (dl19: DL19_DIR, DL19_RUN, DL19_REJUDGED)",
    )
    p.add_argument("--format", default="md", choices=["md", "csv", "tex", "json", "text"])
    p.add_argument("--out", type=Path, default=None, help="also write .md/.csv/.tex/.json/.png here")
    p.set_defaults(func=cmd_table)
    return p


def add_reproduce_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``reproduce`` subcommand; the model flags are ``rank1-eval run``'s own."""
    from rank1_eval.cli import add_model_args

    valid = ", ".join(f"{n} ({i})" for i, n in enumerate(TABLE_NAMES, start=1))
    p = sub.add_parser("reproduce", help="run every cell of a paper table with one model, then write the table")
    p.add_argument("table", help=f"{valid}, or a manifest .json")
    add_model_args(p)
    g = p.add_argument_group("table run")
    g.add_argument("--output-dir", type=Path, default=Path("results"))
    g.add_argument("--store", type=Path, default=None, help="SQLite judgement store (default: OUTPUT_DIR/store.sqlite)")
    g.add_argument("--top-k", type=int, default=None, help="override the manifest's top-k (100)")
    g.add_argument("--limit-queries", type=int, default=None, help="smoke runs only: results are partial")
    g.add_argument("--cells", type=_cells_arg, default=None, help="comma-separated column keys to run")
    g.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="NAME=PATH",
        help="value of a manifest placeholder (dl19: DL19_DIR, DL19_RUN, DL19_REJUDGED)",
    )
    g.add_argument("--row", default=None, help="paper row to compare against (for a model outside the paper)")
    g.add_argument("--skip-existing", action="store_true", help="do not re-evaluate cells with a result folder")
    g.add_argument("--no-progress", action="store_true")
    from rank1_eval.cli import _allow_failed

    g.add_argument("--allow-failed", type=_allow_failed, nargs="?", const="all", default=None, metavar="N|P%",
                   help="accept failed pairs per cell (all, N or P%%); by default: exit code 3")  # fmt: skip
    p.set_defaults(func=cmd_reproduce)
    return p
