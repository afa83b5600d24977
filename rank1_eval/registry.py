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
from functools import cache
from types import ModuleType
from typing import Any

CITATION = """@misc{weller2025rank1,
  title={Rank1: Test-Time Compute for Reranking in Information Retrieval},
  author={Orion Weller and Kathryn Ricci and Eugene Yang and Andrew Yates and Dawn Lawrie and Benjamin Van Durme},
  year={2025}, eprint={2502.18418}, archivePrefix={arXiv}, primaryClass={cs.IR}
}"""

# name -> (parameters, base model); AWQ variants share their base's parameter count.
CHECKPOINTS: dict[str, tuple[int, str]] = {
    "jhu-clsp/rank1-0.5b": (494_000_000, "Qwen/Qwen2.5-0.5B"),
    "jhu-clsp/rank1-1.5b": (1_540_000_000, "Qwen/Qwen2.5-1.5B"),
    "jhu-clsp/rank1-3b": (3_090_000_000, "Qwen/Qwen2.5-3B"),
    "jhu-clsp/rank1-7b": (7_610_000_000, "Qwen/Qwen2.5-7B"),
    "jhu-clsp/rank1-14b": (14_700_000_000, "Qwen/Qwen2.5-14B"),
    "jhu-clsp/rank1-32b": (32_500_000_000, "Qwen/Qwen2.5-32B"),
    "jhu-clsp/rank1-mistral-2501-24b": (23_600_000_000, "mistralai/Mistral-Small-24B-Base-2501"),
    "jhu-clsp/rank1-llama3-8b": (8_030_000_000, "meta-llama/Llama-3.1-8B"),
}
AWQ_OF = ("rank1-7b", "rank1-14b", "rank1-32b", "rank1-mistral-2501-24b", "rank1-llama3-8b")


def all_checkpoints() -> dict[str, tuple[int, str]]:
    out = dict(CHECKPOINTS)
    for short in AWQ_OF:
        out[f"jhu-clsp/{short}-awq"] = CHECKPOINTS[f"jhu-clsp/{short}"]
    return out


Loader = Callable[..., Any]  # mteb calls it as loader(name, revision=..., **loader_kwargs)


def _meta(name: str, revision: str | None, n_parameters: int | None, adapted_from: str | None, loader: Loader) -> Any:
    from mteb.models import ModelMeta

    return ModelMeta(
        loader=loader,
        loader_kwargs={},
        name=name,
        revision=revision,
        release_date="2025-02-25" if name.startswith("jhu-clsp/") else None,
        languages=["eng-Latn"],
        n_parameters=n_parameters,
        memory_usage_mb=None,
        max_tokens=16000,
        embed_dim=None,
        license="mit" if name.startswith("jhu-clsp/") else None,
        open_weights=True,
        public_training_code="https://github.com/orionw/rank1",
        public_training_data="https://huggingface.co/datasets/jhu-clsp/rank1-training-data",
        framework=["PyTorch"],
        reference=f"https://huggingface.co/{name}" if name.startswith("jhu-clsp/") else None,
        similarity_fn_name=None,
        use_instructions=True,
        training_datasets={"MSMARCO"},
        adapted_from=adapted_from,
        model_type=["cross-encoder"],
        citation=CITATION,
    )


def _registered_metas(loader: Loader) -> dict[str, Any]:
    # mteb first: its first import may run the hook below, which fills the cache; building the metas inside
    # the cached call would then build them twice and leave mteb's registry and our models with different ones
    import mteb.models  # noqa: F401

    return _build_metas(loader)


@cache
def _build_metas(loader: Loader) -> dict[str, Any]:
    return {name: _meta(name, None, n, base, loader) for name, (n, base) in all_checkpoints().items()}


def register(loader: Loader) -> None:
    """Insert every rank1 checkpoint into mteb's registry (imports mteb; idempotent)."""
    metas = _registered_metas(loader)
    from mteb.models.model_implementations import MODEL_REGISTRY

    MODEL_REGISTRY.update(metas)


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
    base = all_checkpoints().get(model_name_or_path)
    return _meta(name, revision, base[0] if base else None, base[1] if base else None, loader)
