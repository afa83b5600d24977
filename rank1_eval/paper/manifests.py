"""Paper-table manifests: what every cell of a paper table is, as data.

A manifest (``rank1_eval/data/tables/<name>.json``, shipped as package data) names, for every cell, the
task, subtask, split, first-stage run, metric and the scale the paper prints it in, and holds the paper's value
for every model it reports, transcribed from the paper (arXiv 2502.18418 v1).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE_NAMES = ("bright", "nevir", "mfollowir-crosslingual", "mfollowir", "dl19", "beir", "awq")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TableError(ValueError):
    """A manifest or a table request that cannot be served; the message says which file or name."""


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
        """Mean of the row's printed cells: set beside the printed average, which may differ (BEIR)."""
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
