"""rank1 checkpoints as mteb ``ModelMeta`` entries, inserted into mteb's registry at ``import rank1_eval``.

mteb's registry is a plain dict (no entry points), so registration is an insert. ``mteb.get_model(name)`` then
calls our loader with no network call; operational settings belong in ``loader_kwargs`` (kwargs given to
``get_model`` become ``experiment_kwargs`` and change the results path).
"""

from __future__ import annotations

import os
from functools import cache
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


def _loader(model_name: str, revision: str | None = None, **kwargs: Any) -> Any:
    from rank1_eval.model import rank1

    return rank1(model_name, revision=revision, **kwargs)


def _meta(name: str, revision: str | None, n_parameters: int | None, adapted_from: str | None) -> Any:
    from mteb.models import ModelMeta

    return ModelMeta(
        loader=_loader,
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


@cache
def _registered_metas() -> dict[str, Any]:
    return {name: _meta(name, None, n, base) for name, (n, base) in all_checkpoints().items()}


def register() -> None:
    """Insert every rank1 checkpoint into mteb's registry (idempotent)."""
    from mteb.models.model_implementations import MODEL_REGISTRY

    MODEL_REGISTRY.update(_registered_metas())


def model_meta_for(model_name_or_path: str, revision: str | None = None) -> Any:
    """The registered meta of a checkpoint, or one made for a local folder / other Hub id (name needs a '/')."""
    metas = _registered_metas()
    if model_name_or_path in metas and revision is None:
        return metas[model_name_or_path]
    if os.path.isdir(model_name_or_path):
        name = f"local/{os.path.basename(os.path.normpath(model_name_or_path))}"
    elif "/" in model_name_or_path:
        name = model_name_or_path
    else:
        name = f"local/{model_name_or_path}"
    base = all_checkpoints().get(model_name_or_path)
    return _meta(name, revision, base[0] if base else None, base[1] if base else None)
