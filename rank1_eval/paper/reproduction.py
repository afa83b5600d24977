"""``reproduce``: every cell a paper table needs, run with one loaded model, then the table written."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank1_eval.layout import safe_name
from rank1_eval.paper.files import write_table_files
from rank1_eval.paper.manifests import Table, TableError, load_table, substitute, unresolved
from rank1_eval.paper.results import TableResult, table_from_results

log = logging.getLogger(__name__)


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
    """None for the manifest's rank1 run file: the driver fetches that very file itself, and the run then counts
    as one on the task's default first stage (as `rank1-eval run` without --run-file)."""
    if run.run_file == "manifest":
        from rank1_eval.runs import run_file_for

        run_file_for(run.task, run.subtask)  # a task without a rank1 run file fails here, before any loading
        return None
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
    verbose: bool = False,
    command_line: Sequence[str] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    dataset_paths: Mapping[str, str] | None = None,
) -> Reproduction:
    """Run (or resume through the store) every cell ``model`` needs, with one loaded model, then write the table.

    ``model`` is a :class:`rank1_eval.rank1` (or a mapping of its constructor arguments). A cell that fails
    on bad input (no dataset, no run file) is reported and skipped; the others still run. Outputs: one run
    folder per cell (:func:`rank1_eval.layout.run_folder`) and ``output_dir/tables/<table>__<safe model>.*``;
    the table shows exactly the runs of this call (``skip_existing``: the existing run of the same settings).
    Datasets come from the Hub, or from local copies: ``dataset_paths`` (task name -> folder) first, then
    ``data_root`` (``<root>/<Hub repo id>``, default ``$RANK1_DATA_ROOT``).
    """
    from rank1_eval.errors import user_errors
    from rank1_eval.evaluate import RunOptions, evaluate, prepare, run_folder

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
    pinned: dict[str, Path] = {}  # task folder name -> the run folder this call wrote (or found)
    try:
        for run in runs:
            label = f"{run.task}{'/' + run.subtask if run.subtask else ''}"
            try:
                opts = RunOptions(
                    task=run.task,
                    subtask=run.subtask,
                    run_file=_resolve_run_file(run),
                    top_k=top_k or run.top_k,
                    split=run.split,
                    dataset_path=(dataset_paths or {}).get(run.task),
                    data_root=str(data_root) if data_root else None,
                    qrels=run.qrels,
                    output_dir=out_root,
                    store=Path(store) if store else None,
                    limit_queries=limit_queries,
                    progress=progress,
                    verbose=verbose,
                    command_line=list(command_line or sys.argv),
                )
                prepared = prepare(opts, name)
                folder = run_folder(model, prepared, opts)
                pinned[folder.parent.name] = folder
                if skip_existing and _whole(folder):  # a damaged folder is rebuilt (from the store), not skipped
                    log.info("%s: %s exists (same settings), skipped", label, folder)
                    continue
                summaries[label] = evaluate(model, prepared, opts)
            except user_errors() as exc:
                failures[label] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.error("%s: %s", label, failures[label])
            except Exception as exc:  # one broken cell (e.g. a Hub download inside mteb) must not end the table
                failures[label] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                log.exception("%s failed; the other cells go on (its judgements are in the store)", label)
    finally:
        if owned:
            model.close()
    (out_root / safe_name(name)).mkdir(parents=True, exist_ok=True)
    result = table_from_results(
        table, out_root, safe_name(name), row=row, placeholders=subs, allow_partial=True, pinned=pinned
    )
    files = write_table_files(result, out_root / "tables", f"{table.name}__{safe_name(name)}")
    return Reproduction(result, files, summaries, failures)


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
