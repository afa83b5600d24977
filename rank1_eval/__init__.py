"""rank1_eval: evaluation harness for the rank1 reasoning reranker.

``import rank1_eval`` is light: it never imports mteb, torch or vLLM. The rank1 checkpoints are registered
with mteb at once when mteb is already imported, else right after mteb's own import (see
:mod:`rank1_eval.registry`), so ``mteb.get_model("jhu-clsp/rank1-7b")`` works whatever the import order.
Engines are imported when a model is first used.
"""

from rank1_eval.model import Rank1, load_rank1, rank1
from rank1_eval.records import Completion, Judgement, Pair
from rank1_eval.registry import register_with_mteb as _register_with_mteb

__version__ = "0.1.0"
__all__ = ["Completion", "Judgement", "Pair", "Rank1", "__version__", "load_rank1", "rank1"]

_register_with_mteb(load_rank1)
