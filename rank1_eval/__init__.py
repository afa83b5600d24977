"""rank1_eval: evaluation harness for the rank1 reasoning reranker.

``import rank1_eval`` registers the rank1 checkpoints with mteb; it never imports torch or vLLM (engines are
imported when a model is first used).
"""

from rank1_eval.model import Rank1, rank1
from rank1_eval.records import Completion, Judgement, Pair
from rank1_eval.registry import register as _register

__version__ = "0.1.0"
__all__ = ["Completion", "Judgement", "Pair", "Rank1", "__version__", "rank1"]

_register()
