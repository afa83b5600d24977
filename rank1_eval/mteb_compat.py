"""Everything rank1_eval takes from mteb, in one place: the range ``pyproject.toml`` declares is checked here.

rank1_eval supports a *range* of mteb (``MTEB_RANGE``), so installing it leaves a user's mteb alone. Each name
below is one mteb API rank1_eval relies on; a new mteb that moves one breaks this module only, and
``scripts/test_mteb_versions.sh`` shows it. Imports happen inside the functions: ``import rank1_eval`` (and
``--help``, ``table``, ``compare``) never import mteb.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

MTEB_FLOOR = "2.12.21"
MTEB_RANGE = ">=2.12.21,<3"  # pyproject.toml's requirement; tests/test_mteb.py checks the two agree
TESTED = ("2.12.21", "2.26.24")  # the floor and the newest on PyPI: demo, baselines and the mteb tests (README)


def mteb_version() -> str | None:
    try:
        return metadata.version("mteb")
    except metadata.PackageNotFoundError:
        return None


def evaluate(model: Any, tasks: Sequence[Any], *, batch_size: int) -> Any:
    """``mteb.evaluate`` of one model on tasks, no cache, errors raised, mteb's own bars off."""
    import mteb

    return mteb.evaluate(
        model,
        list(tasks),
        cache=None,
        overwrite_strategy="always",
        show_progress_bar=False,
        encode_kwargs={"batch_size": batch_size, "show_progress_bar": False},
        raise_error=True,
    )


def get_task(name: str, **kwargs: Any) -> Any:
    """``mteb.get_task`` (``eval_splits``, ``hf_subsets`` narrow it)."""
    import mteb

    return mteb.get_task(name, **kwargs)


def retrieval_task_classes() -> tuple[Any, Any]:
    """(AbsTaskRetrieval, TaskMetadata): what a local BEIR folder becomes."""
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    return AbsTaskRetrieval, TaskMetadata


def model_meta_class() -> Any:
    from mteb.models import ModelMeta

    return ModelMeta


def model_registry() -> dict[str, Any]:
    """mteb's registry of model metas by name (rank1_eval inserts its checkpoints here)."""
    from mteb.models.model_implementations import MODEL_REGISTRY

    return MODEL_REGISTRY


def registered_meta(name: str) -> Any | None:
    """The registered ModelMeta of ``name``, or None (no Hub look-up: mteb's own registry only)."""
    return model_registry().get(name)


def is_cross_encoder(meta: Any) -> bool:
    return "cross-encoder" in (getattr(meta, "model_type", None) or [])


def local_cross_encoder_meta(name: str, revision: str | None) -> Any:
    """The ModelMeta of a local CrossEncoder folder, named ``local/<folder>`` as rank1's local folders are."""
    return model_meta_class().create_empty(
        overwrites={
            "name": name,
            "revision": revision,
            "model_type": ["cross-encoder"],
            "framework": ["Sentence Transformers", "PyTorch"],
            "open_weights": True,
        }
    )


def baseline_meta(name: str, revision: str | None) -> Any:
    """The ModelMeta a baseline's result is filed under (``rank1-eval export``): mteb's registered one, else a
    local folder's."""
    meta = registered_meta(name)
    if meta is None:
        return local_cross_encoder_meta(name, revision)
    return meta if revision in (None, meta.revision) else meta.model_copy(update={"revision": revision})


def get_model(name: str, revision: str | None = None, device: str | None = None, **kwargs: Any) -> Any:
    """mteb's own loader of a registered model (``mteb.get_model``)."""
    import mteb

    return mteb.get_model(name, revision=revision, device=device, **kwargs)


def cross_encoder_wrapper(path: str, *, device: str | None = None, **kwargs: Any) -> Any:
    """A sentence-transformers CrossEncoder folder as mteb wraps one (``mteb.models.CrossEncoderWrapper``)."""
    from mteb.models import CrossEncoderWrapper

    return CrossEncoderWrapper(path, device=device, **kwargs)


def result_cache(root: Any) -> Any:
    from mteb.cache import ResultCache

    return ResultCache(root)


def task_result_class() -> Any:
    from mteb.results import TaskResult

    return TaskResult


def loader_columns(loader: Any) -> dict[str, list[Any]]:
    """All rows of an mteb DataLoader as columns (mteb's collate gives dicts of lists)."""
    columns: dict[str, list[Any]] = {}
    for batch in loader:
        for key, values in batch.items():
            columns.setdefault(key, []).extend(values)
    return columns


def select_rows(loader: Any, indices: Sequence[int], batch_size: int) -> Any:
    """A DataLoader over some rows of an mteb DataLoader's dataset, with its collate function (mteb's own idiom
    in its search wrappers): what a model's ``predict`` gets for the pairs the store lacks."""
    from torch.utils.data import DataLoader

    return DataLoader(
        loader.dataset.select(list(indices)),
        batch_size=batch_size,
        collate_fn=loader.collate_fn,
        shuffle=False,
    )


def cross_encoder_inputs(
    metadata: Any, data: Any, *, subset: str, split: str, batch_size: int = 64
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The query and document columns the installed mteb's cross-encoder search hands ``predict`` for a loaded
    split, obtained by running mteb's own ``SearchCrossEncoderWrapper`` with a model that only records them.

    Run rather than imitated because the texts differ by mteb version: 2.12's wrapper prepares the queries as
    documents (``text`` stripped, no ``query`` column), 2.26's as queries (``query`` as written). Shards must
    judge exactly the prompts ``MTEB(...).run`` asks for, or their stores would not merge into one run.
    """
    from mteb.models.search_wrappers import SearchCrossEncoderWrapper

    seen: dict[str, dict[str, list[Any]]] = {}

    class _Recorder:
        mteb_model_meta = None

        def predict(self, inputs1: Any, inputs2: Any, **kwargs: Any) -> list[float]:
            seen["q"], seen["d"] = loader_columns(inputs1), loader_columns(inputs2)
            return [0.0] * len(seen["d"].get("id", []))

    wrapper = SearchCrossEncoderWrapper(_Recorder())
    where = {"task_metadata": metadata, "hf_split": split, "hf_subset": subset}
    encode = {"batch_size": batch_size, "show_progress_bar": False}
    wrapper.index(data["corpus"], encode_kwargs=encode, **where)
    top = data.get("top_ranked") or {}
    top_k = max(map(len, top.values()), default=1)
    wrapper.search(data["queries"], top_k=top_k, encode_kwargs=encode, top_ranked=top, **where)
    return seen.get("q", {}), seen.get("d", {})
