"""Result folders -> table cells: find each cell's run folder, read its metric, fill the paper's rows.

Each cell's run is found through :mod:`rank1_eval.layout` (the complete run of the cell's task, the column's
top-k preferred; partial runs only with ``allow_partial``; several candidates: the newest, with a note).

The paper's printed averages are kept as printed; ours are recomputed from our cells and flagged when cells
are missing, because an average over fewer subsets is a different number. A cell without a result folder stays
missing: a zero would read as a (terrible) result. Nothing here imports mteb: reading folders is instant.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank1_eval.layout import ResultsError, RunFolder, choose_run, list_runs, model_folder_name, safe_name
from rank1_eval.paper.manifests import Average, Column, Row, Table, TableError, load_table, substitute, unresolved

_FIRST_STAGE_METRICS = {"ndcg_at_10": "ndcg_cut_10"}  # column metric -> what vs_first_stage measures


def result_label(column: Column, placeholders: Mapping[str, str]) -> str | None:
    """``<Task>_<subtask>`` as the driver names the folder; None while a local path is still a placeholder."""
    from rank1_eval.tasks import _safe_task_name

    task = substitute(column.task, placeholders)
    if not task or unresolved(task):
        return None
    if column.is_local:
        return f"{_safe_task_name(Path(task))}_default"
    return f"{task}_{column.subtask or 'default'}"


def alias_labels(label: str) -> list[str]:
    """Other folder names holding the same cell: mteb 2.x's per-domain BRIGHT tasks and ``BrightRetrieval``.

    ``BrightRetrieval_biology`` <-> ``BrightBiologyRetrieval_default``: the same domain, the same run file and
    the same dataset prompt; the v1.1 task also drops BRIGHT's ``excluded_ids`` from the candidates.
    """
    from rank1_eval.prompts import BRIGHT_DOMAIN_TASKS

    task, _, subtask = label.rpartition("_")
    if label.startswith("BrightRetrieval_"):
        domain = label.removeprefix("BrightRetrieval_")
        return [f"{name}_default" for name, d in BRIGHT_DOMAIN_TASKS.items() if d == domain]
    if subtask == "default" and task in BRIGHT_DOMAIN_TASKS:
        return [f"BrightRetrieval_{BRIGHT_DOMAIN_TASKS[task]}"]
    return []


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


@dataclass(frozen=True)
class Selection:
    """Which run of a cell a table shows: with ``pinned`` (``reproduce``: task folder name -> the run it just
    wrote) exactly those runs and no others; else the complete run matching ``where``, partial runs only with
    ``allow_partial``."""

    allow_partial: bool = False
    where: Mapping[str, Any] | None = None
    pinned: Mapping[str, Path] | None = None


def _task_folder(column: Column, model_dir: Path, placeholders: Mapping[str, str]) -> tuple[Path | None, str | None]:
    """``<model>/<Task>_<subtask>`` of a cell; a local task whose path is a placeholder: the one folder that fits."""
    label = result_label(column, placeholders)
    if label is not None:  # mteb's per-domain BRIGHT tasks and BrightRetrieval hold the same cells
        found = [model_dir / n for n in (label, *alias_labels(label)) if list_runs(model_dir / n)]
        if found and found[0].name != label:
            return found[0], f"from {found[0].name}"
        return model_dir / label, None
    if not column.result_match or not model_dir.is_dir():
        return None, None
    hits = [
        p
        for p in sorted(model_dir.iterdir())
        if p.is_dir()
        and column.result_match.lower() in p.name.lower()
        and p.name.endswith("Local_default")
        and list_runs(p)
    ]
    if len(hits) != 1:
        return None, (f"{len(hits)} folders match {column.result_match!r}; set the task path" if hits else None)
    return hits[0], None


def _find_folder(
    column: Column, model_dir: Path, placeholders: Mapping[str, str], select: Selection
) -> tuple[Folder | None, str | None]:
    """The run folder of one cell, and a note when something about it is off."""
    task_dir, where_from = _task_folder(column, model_dir, placeholders)
    if task_dir is None:
        return None, where_from
    try:
        if select.pinned is not None:  # never another run's folder in place of a cell that failed this time
            pinned = select.pinned.get(task_dir.name)
            run = RunFolder.read(pinned) if pinned is not None else None
            note = f"partial run (--limit-queries {run.limit_queries})" if run and run.partial else None
        else:
            runs = list_runs(task_dir)
            if column.split:  # a run of another split is another table's
                fitting = [r for r in runs if r.settings.get("split") in (None, column.split)]
                if runs and not fitting:
                    return None, f"{task_dir.name} holds split {runs[-1].settings.get('split')!r}, not {column.split!r}"
                runs = fitting
            prefer = {"top_k": column.top_k}
            choice = choose_run(runs, prefer=prefer, where=select.where, allow_partial=select.allow_partial)
            run, note = choice.run, choice.note
    except ResultsError as exc:
        raise TableError(str(exc)) from None
    if run is None:
        return None, note
    note = "; ".join(n for n in (where_from, note) if n) or None
    return Folder.read(run.path), note


def _fill(
    table: Table,
    row: Row | None,
    model_dir: Path,
    placeholders: Mapping[str, str],
    *,
    key: str,
    label: str,
    checkpoint: str | None,
    select: Selection,
    first_stage: bool = False,
) -> RowResult:
    cells: dict[str, Cell] = {}
    for column in table.columns:
        paper = row.paper.get(column.key) if row else None
        if not column.reproducible or not column.metric:
            cells[column.key] = Cell(column, paper, None, note="not measured by rank1_eval")
            continue
        folder, note = _find_folder(column, model_dir, placeholders, select)
        read = first_stage_value if first_stage else metric_value
        raw = read(folder, column.metric) if folder is not None else None
        if folder is not None and raw is None and note is None:
            note = "first stage not recorded" if first_stage else f"{column.metric} not in {folder.path.name}"
        ours = raw * column.scale if raw is not None else None
        cells[column.key] = Cell(column, paper, ours, folder.path if folder else None, note)
    return RowResult(key, label, checkpoint, first_stage, cells, _averages(table, row, cells), model_dir.name)


def _model_target(
    table: Table, results: Path, model: str, row: str | None, *, several: bool
) -> tuple[Row | None, Path, str, str, str | None]:
    """(paper row, model folder, row key, label, checkpoint) of one ``--model``; several: keys told apart."""
    name = model_folder_name(model)
    key = name if several else "ours"
    model_dir = results / name
    if not model_dir.is_dir() and (results / model).is_dir():
        model_dir, name = results / model, model
    if not model_dir.is_dir():
        have = sorted(p.name for p in results.iterdir() if p.is_dir())
        looked = model if "__" in model and "/" not in model else name  # a folder name is not made safe twice
        raise TableError(f"no results for model {model!r} under {results} (looked for {looked}/); have: {have}")
    if row is not None:  # a model set against a chosen paper row
        chosen = table.row(row)
        return chosen, model_dir, key, f"{model} (vs {chosen.label})", model
    matched = next(
        (r for r in table.rows if r.checkpoint and (r.checkpoint == model or safe_name(r.checkpoint) == name)),
        None,
    )
    if matched is not None:
        return matched, model_dir, matched.key, matched.label, matched.checkpoint
    return None, model_dir, key, model, model


def table_from_results(
    table: Table | str,
    results_dir: str | os.PathLike[str],
    model: str | Sequence[str] | None = None,
    *,
    row: str | None = None,
    placeholders: Mapping[str, str] | None = None,
    allow_partial: bool = False,
    where: Mapping[str, Any] | None = None,
    pinned: Mapping[str, Path] | None = None,
) -> TableResult:
    """Fill a table from result folders ``results_dir/<safe model>/<Task>_<subtask>/<run>/`` without running.

    ``model``: a checkpoint id, a local model path or a folder name under ``results_dir``, or several of them
    (one row each, in order: rank1 rows next to the baselines a user ran, e.g. ``BAAI/bge-reranker-v2-m3``);
    without it, every row whose checkpoint has a folder is filled. ``row`` says which paper row our numbers
    stand against when the model is not one of the table's checkpoints. First-stage rows are filled from the
    first stage's nDCG@10 that each reranked run records (``vs_first_stage``). Partial runs (``--limit-queries``)
    fill no cell unless ``allow_partial``; ``where`` narrows the runs by setting (``{"prompt_set": "paper"}``);
    ``pinned`` maps task folder names to the exact run to show (what ``reproduce`` just wrote; cells without
    one stay empty).
    """
    select = Selection(allow_partial=allow_partial, where=where, pinned=pinned)
    table = table if isinstance(table, Table) else load_table(table)
    results = Path(results_dir)
    if not results.is_dir():
        raise TableError(f"results folder {results} does not exist")
    subs = dict(placeholders or {})
    targets: list[tuple[Row | None, Path, str, str, str | None]] = []
    models = [model] if isinstance(model, str) else list(model or [])
    for one in models:
        targets.append(_model_target(table, results, one, row, several=len(models) > 1))
    if not models:
        for r in table.rows:
            if r.checkpoint and (results / safe_name(r.checkpoint)).is_dir():
                targets.append((r, results / safe_name(r.checkpoint), r.key, r.label, r.checkpoint))
        if not targets:
            raise TableError(
                f"no result folders for any checkpoint of table {table.name} under {results}; pass --model "
                "(a model id, local model path or folder name)"
            )
    for target in targets:  # a model folder without one rank1_eval run is an error, not a table of dashes
        model_dir = target[1]
        if not any(list_runs(t) for t in sorted(model_dir.iterdir()) if t.is_dir()):
            raise TableError(
                f"{model_dir} holds no rank1_eval result folder (expected <Task>_<subtask>/<run>/summary.json): "
                "pass the --output-dir of `rank1-eval run` as --results"
            )
    rows: list[RowResult] = []
    for r in table.rows:
        if not r.first_stage:
            continue
        # the first stage as recorded beside the first reranked model that has it
        candidates = [
            _fill(table, r, d, subs, key=r.key, label=r.label, checkpoint=None, select=select, first_stage=True)
            for _, d, *_ in targets
        ]
        rows.append(next((c for c in candidates if c.n_ours), candidates[0]))
    rows += [_fill(table, r, d, subs, key=k, label=lab, checkpoint=ck, select=select) for r, d, k, lab, ck in targets]
    return TableResult(table, rows, "results", results)
