"""rank1 checkpoints as mteb ``ModelMeta`` entries, inserted into mteb's registry.

mteb's registry is a plain dict (no entry points), so registration is an insert. ``mteb.get_model(name)`` then
calls our loader with no network call; operational settings belong in ``loader_kwargs`` (kwargs given to
``get_model`` become ``experiment_kwargs`` and change the results path).

``import rank1_eval`` must stay light (mteb takes seconds to import), so it calls :func:`register_with_mteb`:
it registers at once when mteb is already imported, and otherwise the moment mteb's own import finishes (a
one-shot import hook), so ``import rank1_eval; mteb.get_model("jhu-clsp/rank1-7b")`` works in either order.
The loader (``rank1_eval.model.load_rank1``) is passed in: this module sits below the model and never
imports it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

CITATION = """@misc{weller2025rank1,
  title={Rank1: Test-Time Compute for Reranking in Information Retrieval},
  author={Orion Weller and Kathryn Ricci and Eugene Yang and Andrew Yates and Dawn Lawrie and Benjamin Van Durme},
  year={2025}, eprint={2502.18418}, archivePrefix={arXiv}, primaryClass={cs.IR}
}"""

# The languages the paper evaluates (English; Farsi, Russian and Chinese in mFollowIR), in mteb's codes (the
# ones mteb's mFollowIR task declares).
LANGUAGES = ["eng-Latn", "fas-Arab", "rus-Cyrl", "zho-Hans"]
MB = 1024**2


@dataclass(frozen=True)
class Checkpoint:
    """Public facts about one rank1 checkpoint (its base model's, where the rank1 card says "trained from")."""

    n_parameters: int
    base: str  # the model it was fine-tuned from (mteb's adapted_from)
    max_tokens: int  # the base model's context window
    embedding_parameters: int  # input embeddings + LM head: the part AWQ keeps in 16 bits


# Sources (public model cards and config.json files on the Hugging Face Hub; the rank1 checkpoints keep their base's
# architecture, github.com/orionw/rank1 README: "Trained from Qwen-7B base", "... Mistral-Small 2501 24B base",
# "... Llama 3.1 8B base"; the rank1 repos' own config.json could not be read from this offline machine):
# - Qwen2.5-0.5B/1.5B/3B base cards: "Context Length: Full 32,768 tokens", tied embeddings (tie_word_embeddings
#   true), hidden 896/1536/2048, vocab 151936; parameters 0.49B/1.54B/3.09B.
# - Qwen2.5-7B/14B/32B base cards: "Context Length: 131,072 tokens" (config.json max_position_embeddings 131072),
#   untied embeddings, hidden 3584/5120/5120, vocab 152064; parameters 7.61B/14.7B/32.5B.
# - Mistral-Small-24B-Base-2501 card: "Context Window: A 32k context window" (max_position_embeddings 32768),
#   hidden 5120, vocab 131072, untied; 23.6B parameters.
# - Llama-3.1-8B card: 128K context (max_position_embeddings 131072), hidden 4096, vocab 128256, untied; 8.03B.
CHECKPOINTS: dict[str, Checkpoint] = {
    "jhu-clsp/rank1-0.5b": Checkpoint(494_000_000, "Qwen/Qwen2.5-0.5B", 32_768, 151_936 * 896),
    "jhu-clsp/rank1-1.5b": Checkpoint(1_540_000_000, "Qwen/Qwen2.5-1.5B", 32_768, 151_936 * 1_536),
    "jhu-clsp/rank1-3b": Checkpoint(3_090_000_000, "Qwen/Qwen2.5-3B", 32_768, 151_936 * 2_048),
    "jhu-clsp/rank1-7b": Checkpoint(7_610_000_000, "Qwen/Qwen2.5-7B", 131_072, 2 * 152_064 * 3_584),
    "jhu-clsp/rank1-14b": Checkpoint(14_700_000_000, "Qwen/Qwen2.5-14B", 131_072, 2 * 152_064 * 5_120),
    "jhu-clsp/rank1-32b": Checkpoint(32_500_000_000, "Qwen/Qwen2.5-32B", 131_072, 2 * 152_064 * 5_120),
    "jhu-clsp/rank1-mistral-2501-24b": Checkpoint(
        23_600_000_000, "mistralai/Mistral-Small-24B-Base-2501", 32_768, 2 * 131_072 * 5_120
    ),
    "jhu-clsp/rank1-llama3-8b": Checkpoint(8_030_000_000, "meta-llama/Llama-3.1-8B", 131_072, 2 * 128_256 * 4_096),
}
AWQ_OF = ("rank1-7b", "rank1-14b", "rank1-32b", "rank1-mistral-2501-24b", "rank1-llama3-8b")
AWQ_SUFFIX = "-awq"
# AWQ (4-bit, group size 128): per quantized weight half a byte, plus a 16-bit scale and a 4-bit zero per group
AWQ_BYTES_PER_WEIGHT = 0.5 + (2 + 0.5) / 128


def all_checkpoints() -> dict[str, Checkpoint]:
    """Every registered checkpoint; an AWQ variant counts its base's (unquantized) parameters, as its card does."""
    out = dict(CHECKPOINTS)
    for short in AWQ_OF:
        out[f"jhu-clsp/{short}{AWQ_SUFFIX}"] = CHECKPOINTS[f"jhu-clsp/{short}"]
    return out


def adapted_from(name: str) -> str | None:
    """An AWQ checkpoint is a quantization of the rank1 model (not of the base); the rest are fine-tunes of it."""
    if name.endswith(AWQ_SUFFIX) and name.removesuffix(AWQ_SUFFIX) in CHECKPOINTS:
        return name.removesuffix(AWQ_SUFFIX)
    ckpt = CHECKPOINTS.get(name)
    return ckpt.base if ckpt else None


def memory_usage_mb(name: str) -> int | None:
    """Weight memory in MB: 16-bit weights (as mteb's dtype-aware estimate counts them), AWQ at ~4.2 bits with
    the embeddings and LM head left in 16 bits."""
    ckpt = all_checkpoints().get(name)
    if ckpt is None:
        return None
    if name.endswith(AWQ_SUFFIX):
        quantized = ckpt.n_parameters - ckpt.embedding_parameters
        return round((quantized * AWQ_BYTES_PER_WEIGHT + ckpt.embedding_parameters * 2) / MB)
    return round(ckpt.n_parameters * 2 / MB)


Loader = Callable[..., Any]  # mteb calls it as loader(name, revision=..., **loader_kwargs)


def _meta(name: str, revision: str | None, loader: Loader, *, checkpoint: str | None = None) -> Any:
    """The ModelMeta of ``name``; ``checkpoint``: the registered rank1 checkpoint whose facts it has, if any."""
    from rank1_eval.mteb_compat import model_meta_class

    ModelMeta = model_meta_class()  # noqa: N806 -- the class, under mteb's name
    facts = all_checkpoints().get(checkpoint or name)
    ours = name.startswith("jhu-clsp/")
    return ModelMeta(
        loader=loader,
        loader_kwargs={},
        name=name,
        revision=revision,
        release_date="2025-02-25" if ours else None,
        languages=list(LANGUAGES) if facts else None,
        n_parameters=facts.n_parameters if facts else None,
        memory_usage_mb=memory_usage_mb(checkpoint or name),
        max_tokens=facts.max_tokens if facts else None,
        embed_dim=None,
        license="mit" if ours else None,
        open_weights=True,
        public_training_code="https://github.com/orionw/rank1",
        public_training_data="https://huggingface.co/datasets/jhu-clsp/rank1-training-data",
        framework=["PyTorch"],
        reference=f"https://huggingface.co/{name}" if ours else None,
        similarity_fn_name=None,
        use_instructions=True,
        training_datasets={"MSMARCO"},
        adapted_from=adapted_from(checkpoint or name),
        model_type=["cross-encoder"],
        citation=CITATION,
    )


def _registered_metas(loader: Loader) -> dict[str, Any]:
    # mteb first: its first import may run the hook below, which fills the cache; building the metas inside
    # the cached call would then build them twice and leave mteb's registry and our models with different ones
    from rank1_eval.mteb_compat import model_meta_class

    model_meta_class()  # imports mteb.models
    return _build_metas(loader)


@cache
def _build_metas(loader: Loader) -> dict[str, Any]:
    return {name: _meta(name, None, loader) for name in all_checkpoints()}


def register(loader: Loader) -> None:
    """Insert every rank1 checkpoint into mteb's registry (imports mteb; idempotent)."""
    metas = _registered_metas(loader)
    from rank1_eval.mteb_compat import model_registry

    model_registry().update(metas)


class _RegisterAfterMtebImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``mteb`` is first imported, lets mteb's own loader run, then registers.

    One shot: it leaves ``sys.meta_path`` as soon as mteb's import starts. Only ``exec_module`` of mteb's
    loader is wrapped, so the module keeps its real loader (resource reading and ``reload`` work as before).
    """

    def __init__(self, loader: Loader) -> None:
        self.loader = loader

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "mteb":
            return None
        with contextlib.suppress(ValueError):  # already removed by a concurrent import
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("mteb")  # the finders after us; None: mteb is not installed
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module
        model_loader = self.loader

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _register_or_warn(model_loader)

        spec.loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def _register_or_warn(loader: Loader) -> None:
    """Registration inside someone else's ``import mteb``: a failure must not break their import, but is said."""
    try:
        register(loader)
    except Exception as exc:  # noqa: BLE001 -- reported, not swallowed: mteb itself still imports
        warnings.warn(
            f"rank1_eval could not register its checkpoints with mteb ({type(exc).__name__}: {exc}); "
            "call rank1_eval.registry.register(rank1_eval.model.load_rank1) to see the full error",
            RuntimeWarning,
            stacklevel=2,
        )


def register_with_mteb(loader: Loader) -> None:
    """Register now if mteb is imported, else right after mteb's import (what ``import rank1_eval`` calls)."""
    if "mteb" in sys.modules:
        register(loader)
        return
    if not any(isinstance(f, _RegisterAfterMtebImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterMtebImport(loader))


def pin_revision(name: str, revision: str | None, *, loader: Loader) -> Any:
    """Make ``mteb.get_model(name, revision=revision)`` load that Hub revision (a commit, branch or tag).

    mteb's registry holds one ModelMeta per name and refuses any other revision than the one it holds; the
    rank1 checkpoints are registered without one (any revision, the Hub's newest), so a user who wants a
    pinned commit declares it here first. The results then carry that revision (provenance, mteb's layout).
    ``None`` unpins.
    """
    if name not in all_checkpoints():
        raise KeyError(f"{name!r} is not a registered rank1 checkpoint; choose one of {', '.join(all_checkpoints())}")
    register(loader)
    from rank1_eval.mteb_compat import model_registry

    registry = model_registry()
    registry[name] = _meta(name, revision, loader)
    return registry[name]


def model_meta_for(model_name_or_path: str, revision: str | None = None, *, loader: Loader) -> Any:
    """The registered meta of a checkpoint, or one made for a local folder / other Hub id (name needs a '/')."""
    metas = _registered_metas(loader)
    if model_name_or_path in metas and revision is None:
        return metas[model_name_or_path]
    if os.path.isdir(model_name_or_path):
        name = f"local/{os.path.basename(os.path.normpath(model_name_or_path))}"
    elif "/" in model_name_or_path:
        name = model_name_or_path
    else:
        name = f"local/{model_name_or_path}"
    known = model_name_or_path if model_name_or_path in all_checkpoints() else None
    return _meta(name, revision, loader, checkpoint=known)
