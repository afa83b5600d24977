"""The paper's tables as data: manifests, tables filled from result folders, renderings, plots, ``reproduce``.

One module per step, imports pointing one way: ``manifests`` (what a cell is) <- ``results`` (result folders
-> cells) <- ``render`` (Markdown, text, LaTeX, CSV) <- ``plots`` (PNG) <- ``files`` (all of them to disk)
<- ``reproduction`` (run every cell with one model, then write the table). Nothing here imports mteb, torch or
matplotlib at import time: ``rank1-eval table`` on existing folders is instant. This package re-exports the
public names, so ``from rank1_eval.paper import load_table`` works whatever module a name lives in.
"""

from rank1_eval.paper.files import write_table_files
from rank1_eval.paper.manifests import (
    TABLE_NAMES,
    Average,
    Column,
    Row,
    Table,
    TableError,
    load_table,
    parse_table,
    substitute,
    table_names,
    tables_dir,
    unresolved,
)
from rank1_eval.paper.plots import plot_delta_png, plot_png
from rank1_eval.paper.render import (
    CSV_FIELDS,
    MISSING,
    fmt,
    latex_escape,
    render_csv,
    render_latex,
    render_markdown,
    render_text,
)
from rank1_eval.paper.reproduction import CellRun, Reproduction, cell_runs, reproduce
from rank1_eval.paper.results import (
    AverageCell,
    Cell,
    Folder,
    RowResult,
    TableResult,
    first_stage_value,
    metric_value,
    model_folder_name,
    paper_table,
    result_label,
    table_from_results,
)

__all__ = [
    "CSV_FIELDS",
    "MISSING",
    "TABLE_NAMES",
    "Average",
    "AverageCell",
    "Cell",
    "CellRun",
    "Column",
    "Folder",
    "Reproduction",
    "Row",
    "RowResult",
    "Table",
    "TableError",
    "TableResult",
    "cell_runs",
    "first_stage_value",
    "fmt",
    "latex_escape",
    "load_table",
    "metric_value",
    "model_folder_name",
    "paper_table",
    "parse_table",
    "plot_delta_png",
    "plot_png",
    "render_csv",
    "render_latex",
    "render_markdown",
    "render_text",
    "reproduce",
    "result_label",
    "substitute",
    "table_from_results",
    "table_names",
    "tables_dir",
    "unresolved",
    "write_table_files",
]
