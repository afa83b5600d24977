"""Shard and merge for job arrays (SLURM and friends): split the pairs, judge each share apart, merge the stores.

``rank1-eval run ... --shard I/N`` judges only the pairs whose judgement key falls in shard ``I`` of ``N``
(``int(key[:16], 16) % N == I``: stable, independent of pair order, query limits or which other pairs exist)
into its own store, and writes no outputs — mteb's metrics need every pair, so a shard run never calls mteb.
It builds exactly the prompts the mteb path builds (same query/instruction columns, document text, dataset
template and truncation), so the keys match. ``rank1-eval merge --into STORE SHARD_STORES...`` combines the
stores (a key with two different values is a loud conflict), and ``rank1-eval run ... --store STORE`` then
writes the outputs with nothing left to score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rank1_eval.judge import in_shard  # noqa: F401 -- the shard rule lives beside the judging that applies it
from rank1_eval.scoring import PreparedPrompt


class ShardError(ValueError):
    """A ``--shard`` value that is not ``I/N`` with ``0 <= I < N``."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``; shards are 0-based, as SLURM's ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-7``."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError as exc:
        raise ShardError(f"--shard takes I/N (e.g. 0/4), got {text!r}") from exc
    if n < 1 or not 0 <= i < n:
        raise ShardError(f"--shard {text}: need N >= 1 and 0 <= I < N (shards are 0-based)")
    return i, n


def shard_store_path(output_dir: Path, shard: tuple[int, int]) -> Path:
    return Path(output_dir) / f"store.shard-{shard[0]}-of-{shard[1]}.sqlite"


def task_prompts(model: Any, task: Any) -> list[PreparedPrompt]:
    """The prompts the mteb path builds for every pair of a loaded task (same keys, so shards merge cleanly).

    The texts are the ones the installed mteb's cross-encoder search hands ``predict`` (they differ between mteb
    versions), turned into prompts by the same code as ``rank1.predict``, the template chosen by mteb's task
    name and subset.
    """
    from rank1_eval import mteb_compat

    q, d = mteb_compat.cross_encoder_inputs(task.task.metadata, task.data, subset=task.subset, split=task.split)
    return model.prompts_from_columns(q, d, task.task.metadata.name, task.subset)


def run_shard(model: Any, prepared: Any, opts: Any, shard: tuple[int, int]) -> dict[str, Any]:
    """Judge shard ``shard`` of a prepared task into its own store; no mteb, no outputs."""
    from rank1_eval.preflight import check_run
    from rank1_eval.progress import ProgressDisplay
    from rank1_eval.store import SQLiteStore

    store_path = Path(opts.store) if opts.store else shard_store_path(opts.output_dir, shard)
    check_run(model, prepared, opts, out=None, store_path=store_path)  # store sound, prompts fit: before weights
    store_path.parent.mkdir(parents=True, exist_ok=True)
    prompts = task_prompts(model, prepared.task)
    store = SQLiteStore(store_path)
    progress = ProgressDisplay(0, enabled=opts.progress)  # the shard's share is known once keys are hashed
    try:
        with model.session(store=store, shard=shard):
            model.judge_prompts(prompts, progress=progress)
    finally:
        progress.close()
        store.close()
    stats = model.stats.summary()
    return {
        "task": prepared.task.label,
        "shard": f"{shard[0]}/{shard[1]}",
        "pairs_in_task": len(prompts),
        "pairs_in_shard": stats["pairs_total"],
        "pairs_scored": stats["pairs_scored"],
        "pairs_from_store": stats["pairs_from_store"],
        "pass2": stats["pass2"],
        "failed": stats["failed"],
        "store": str(store_path),
        "engine_info": model.provenance().get("engine_info"),
    }


def shard_message(report: dict[str, Any]) -> str:
    return (
        f"shard {report['shard']} of {report['task']}: {report['pairs_in_shard']} of {report['pairs_in_task']} "
        f"pairs (scored {report['pairs_scored']}, from store {report['pairs_from_store']}) -> {report['store']}\n"
        "no outputs written: when every shard is done, `rank1-eval merge --into STORE SHARD_STORES...` and run "
        "again without --shard and with --store STORE to write the results (nothing is scored twice)"
    )
