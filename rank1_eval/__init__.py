"""rank1_eval: evaluation harness for the rank1 reasoning reranker.

``import rank1_eval`` is light: it never imports mteb, torch or vLLM. The rank1 checkpoints are registered
with mteb at once when mteb is already imported, else right after mteb's own import (see
:mod:`rank1_eval.registry`), so ``mteb.get_model("jhu-clsp/rank1-7b")`` works whatever the import order.
Engines are imported when a model is first used.
"""

from typing import Any

from rank1_eval._data import DEMO_RUN_FILE, DEMO_TASK_DIR, MICRO_RANK1_DIR
from rank1_eval.model import Rank1, load_rank1, pin_revision, rank1
from rank1_eval.records import Completion, Judgement, Pair
from rank1_eval.registry import register_with_mteb as _register_with_mteb

__version__ = "0.1.0"
# the bundled demo, as plain paths: the micro rank1 (a 0.3M-parameter test model) and 10 TREC DL19 queries
MICRO_RANK1 = str(MICRO_RANK1_DIR)
DEMO_TASK = str(DEMO_TASK_DIR)
DEMO_RUN_FILE = str(DEMO_RUN_FILE)
__all__ = [
    "DEMO_RUN_FILE",
    "DEMO_TASK",
    "MICRO_RANK1",
    "Completion",
    "Judgement",
    "Pair",
    "Rank1",
    "__version__",
    "load_rank1",
    "load_traces",
    "pin_revision",
    "rank1",
    "reranking_task",
]

_register_with_mteb(load_rank1)


def __getattr__(name: str) -> Any:
    """``reranking_task`` and ``load_traces`` load the driver and the output readers only when first used."""
    if name == "reranking_task":
        from rank1_eval.evaluate import reranking_task

        return reranking_task
    if name == "load_traces":
        from rank1_eval.outputs import load_traces

        return load_traces
    raise AttributeError(f"module 'rank1_eval' has no attribute {name!r}")
