"""Where the bundled data lives: inside the package, so a checkout, an editable install and a wheel agree.

``data/prompts`` (dataset templates), ``data/run_files`` (run-file manifest and the demo task),
``data/tables`` (paper table manifests) and ``data/micro-rank1`` (the tiny test model the demo runs).
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
PROMPTS_DIR = DATA_DIR / "prompts"
RUN_FILES_DIR = DATA_DIR / "run_files"
TABLES_DIR = DATA_DIR / "tables"
MICRO_RANK1_DIR = DATA_DIR / "micro-rank1"
DEMO_TASK_DIR = RUN_FILES_DIR / "demo" / "dl19-mini"
DEMO_RUN_FILE = DEMO_TASK_DIR / "bm25s_top20.trec"
