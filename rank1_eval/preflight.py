"""Pre-flight: everything a run will need, checked before any weights load.

A week of GPU time must not end in a traceback about a folder, a disk or an id. Before the engine starts,
:func:`check_run` proves that every output can be written (folders writable, the earlier result folder
replaceable, room on the disk), that the judgement store is a sound rank1_eval store (SQLite's own
``quick_check``), that every id can be written to a TREC run, and that every query fits the prompt budget
(the measurement ``--dry-run`` reports, with the tokenizer only). Problems that would end the run raise one
line naming the file or the ids and the fix; problems a run can live with come back as warnings, which the
driver prints and keeps in ``summary.json``.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rank1_eval.store import StoreCorruptError, StoreError, StoreFullError, check_store, salvage_hint

__all__ = ["OutputError", "PromptBudgetError", "check_run", "check_store_file", "check_writable", "estimate_bytes"]

OUTPUT_BYTES_MIN = 600  # per pair, at least: a trace line without reasoning, a prediction, a run line
OUTPUT_BYTES_FIXED = 64 * 1024  # mteb's result JSON, the summary, the qrels
STORE_BYTES_PER_PAIR = 2048  # a judgement with a few hundred tokens of reasoning, plus its index entry
_checked_stores: set[str] = set()  # stores this process checked (later damage: SQLite errors, same one line)


class OutputError(RuntimeError):
    """An output folder that cannot be written (read-only, not a folder, no space): one line with the fix."""


class PromptBudgetError(ValueError):
    """Queries that do not fit the prompt budget even with an empty passage."""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (where a folder that does not exist yet would be created)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, what: str) -> None:
    """``folder`` (or, if it does not exist yet, the ancestor it would be created in) accepts a new file.

    Probed by writing, since permission bits lie to root and to read-only mounts; nothing is left behind and
    no folder is created (a dry run leaves no trace).
    """
    target = existing_ancestor(folder)
    if not target.is_dir():
        where = folder if target == Path(os.path.abspath(folder)) else f"{folder} ({target})"
        raise OutputError(f"{what} {where} exists and is not a folder: pass another path")
    probe = target / f".rank1-write-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        hint = "make it writable or pass another path"
        if exc.errno == errno.EROFS:
            hint = "the file system is mounted read-only: pass a path on a writable disk"
        elif exc.errno == errno.ENOSPC:
            hint = "the disk is full: free space or pass a path on another disk"
        where = folder if target == Path(os.path.abspath(folder)) else f"{folder} (in {target})"
        raise OutputError(f"{what} {where} is not writable ({_reason(exc)}): {hint}") from None


def estimate_bytes(pairs: int, max_output_tokens: int) -> tuple[int, int]:
    """(certain minimum, typical) bytes of a result folder: traces hold each pair's reasoning (~4 bytes/token)."""
    typical_tokens = min(max_output_tokens, 1024)
    return OUTPUT_BYTES_FIXED + pairs * OUTPUT_BYTES_MIN, OUTPUT_BYTES_FIXED + pairs * (
        OUTPUT_BYTES_MIN + 4 * typical_tokens
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def check_store_file(path: Path) -> None:
    """An existing store must be a sound rank1_eval store (checked read-only, once per process and store)."""
    if not path.exists():
        check_writable(path.parent, "judgement store folder")
        return
    if path.is_dir():
        raise StoreError(f"judgement store path {path} is a directory, expected a SQLite file")
    key = str(path.resolve())
    if key in _checked_stores:
        return
    check = check_store(path)  # StoreError for files that are not SQLite or not ours (read-only: writes nothing)
    if not check.ok:
        raise StoreCorruptError(f"judgement store {path} is corrupted ({check.problems[0]}): {salvage_hint(path)}")
    free = shutil.disk_usage(path.parent).free
    if free < 40 * 1024:  # room for the -shm file (32 KiB) and the WAL's first pages, before the first commit
        raise StoreFullError(
            f"no space left for judgement store {path} ({free // 1024} KiB free beside it, the WAL needs room): "
            "free disk space or move the store (--store), then rerun: every judgement committed so far is kept"
        )
    check_writable(path.parent, "judgement store folder")  # SQLite writes -wal/-shm beside the store
    _checked_stores.add(key)


def _id_problems(ids: Iterable[str], what: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) for ids that cannot be TREC columns or qrels.tsv fields."""
    from rank1_eval.runs import trec_token

    ids = list(dict.fromkeys(ids))
    broken = [i for i in ids if "\t" in i or "\n" in i or "\r" in i or not i]
    spaced = [i for i in ids if i not in broken and any(ch.isspace() for ch in i)]
    errors, warnings = [], []
    if broken:
        errors.append(
            f"{len(broken)} {what} ids are empty or contain a tab or line break, which no TREC run or qrels.tsv "
            f"can hold, e.g. {', '.join(map(repr, broken[:3]))}: rename them in the task and the run file"
        )
    if spaced:
        escaped = {trec_token(i) for i in spaced}
        clash = sorted(escaped & (set(ids) - set(spaced)))
        if clash:
            errors.append(
                f"{what} ids with whitespace would collide with other ids once percent-encoded for run.trec, "
                f"e.g. {clash[0]!r}: rename them"
            )
        else:
            warnings.append(
                f"{len(spaced)} {what} ids contain whitespace (e.g. {spaced[0]!r}): run.trec writes them "
                f"percent-encoded ({trec_token(spaced[0])!r}); predictions.json, traces.jsonl and qrels.tsv keep "
                "them as they are"
            )
    return errors, warnings


def check_ids(prepared: Any) -> list[str]:
    top = prepared.task.top_ranked or {}
    errors, warnings = [], []
    for ids, what in ((top.keys(), "query"), ((d for docs in top.values() for d in docs), "doc")):
        e, w = _id_problems(ids, what)
        errors += e
        warnings += w
    if errors:
        raise OutputError("; ".join(errors))
    return warnings


def check_prompt_budget(model: Any, prepared: Any) -> None:
    """Every query fits the prompt budget of the length rule with an empty passage (passages are cut)."""
    from rank1_eval.prompts import format_prompt

    pairs = prepared.task.pairs()
    if not pairs:
        return
    name = getattr(getattr(prepared.task.task, "metadata", None), "name", prepared.task.name)
    final = model.final_queries([p.query for p in pairs], [p.instruction for p in pairs], name, prepared.task.subset)
    by_query: dict[str, str] = {}
    for pair, query in zip(pairs, final, strict=True):
        by_query.setdefault(query, pair.qid)
    tokenizer = model.tokenizer_only()
    texts = list(by_query)
    lengths = [len(ids) for ids in tokenizer([format_prompt(q, "") for q in texts]).input_ids]
    cfg = model.scoring
    reserve = model.forced_reserve()
    budget = cfg.prompt_budget(reserve)
    over = [(by_query[q], n) for q, n in zip(texts, lengths, strict=True) if n > budget]
    if over:
        shown = ", ".join(f"{qid} ({n} tokens)" for qid, n in over[:3])
        if cfg.length_rule == "reserve_output":
            what = f"context_size {cfg.context_size} - max_output_tokens {cfg.max_output_tokens}"
            fix = "raise --context-size or lower --max-output-tokens"
        else:
            what = f"context_size {cfg.context_size} - {reserve} tokens for the forced answer"
            fix = "raise --context-size"
        raise PromptBudgetError(
            f"{len(over)} {'query needs' if len(over) == 1 else 'queries need'} more prompt tokens than the budget "
            f"of {budget} ({what}) even with an empty passage: {shown}; {fix}"
        )


def check_outputs(out: Path, output_dir: Path, pairs: int, max_output_tokens: int) -> list[str]:
    """The result folder ``out`` can be written and swapped in; the disk has room for it."""
    check_writable(Path(output_dir), "output folder")
    check_writable(out.parent, "output folder")
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder: move it away, the results go there")
        try:
            check_writable(out, "result folder of an earlier run")
        except OutputError as exc:
            raise OutputError(f"{exc} (this run replaces it)") from None
    minimum, typical = estimate_bytes(pairs, max_output_tokens)
    free = shutil.disk_usage(existing_ancestor(out.parent)).free
    if free < minimum:
        raise OutputError(
            f"not enough free space for the results under {out.parent}: {_gib(free)} free, {pairs} pairs need at "
            f"least {_gib(minimum)} (about {_gib(typical)}): free space or pass --output-dir on another disk"
        )
    if free < typical:
        return [f"only {_gib(free)} free under {out.parent}; the results of {pairs} pairs may need ~{_gib(typical)}"]
    return []


def check_store_space(store_path: Path, pairs: int) -> list[str]:
    need = pairs * STORE_BYTES_PER_PAIR
    free = shutil.disk_usage(existing_ancestor(store_path.parent)).free
    if free < need:
        return [
            f"only {_gib(free)} free under the judgement store {store_path}; {pairs} judgements may need ~"
            f"{_gib(need)} (a full disk stops the run; committed judgements are kept)"
        ]
    return []


def check_run(model: Any, prepared: Any, opts: Any, *, out: Path | None, store_path: Path) -> list[str]:
    """All pre-flight checks of one run; raises on what would end it, returns warnings for the rest.

    ``out`` is the result folder the run will write (None for a ``--shard`` run, which writes only its store).
    """
    warnings: list[str] = []
    warnings += check_ids(prepared)
    scoring = getattr(model, "scoring", None)  # None: a baseline reranker (no prompt budget, no reasoning)
    if scoring is not None:
        check_prompt_budget(model, prepared)
    check_store_file(store_path)
    pairs = prepared.n_pairs
    if out is not None:
        warnings += check_outputs(out, Path(opts.output_dir), pairs, scoring.max_output_tokens if scoring else 0)
    warnings += check_store_space(store_path, pairs)
    return warnings


def failure_limit(value: str | None, total: int) -> float:
    """How many failed pairs ``--allow-failed`` accepts: none (default), all (bare flag), N, or P%."""
    if value is None:
        return 0
    if value == "all":
        return float("inf")
    if value.endswith("%"):
        return total * float(value[:-1]) / 100.0
    return float(value)


def failure_banner(summary: dict[str, Any], store: str | os.PathLike[str], allowed: float) -> str:
    """The one line a run with too many failed pairs ends with (exit code 3)."""
    failed, total = summary["failed"], summary["pairs_total"]
    examples: Sequence[dict[str, Any]] = summary.get("failed_examples") or []
    first = f"; first: {examples[0]['qid']}/{examples[0]['docid']}: {examples[0]['error']}" if examples else ""
    limit = "" if allowed == 0 else f" (--allow-failed accepts {allowed:g})"
    return (
        f"rank1-eval: FAILED PAIRS in {summary.get('task', 'the run')}: {failed} of {total} pairs "
        f"({100.0 * failed / max(1, total):.1f}%) got no score "
        f"from the model and were given the failed_score policy{limit}{first}. The metrics above are not the "
        f"model's. Fix the cause, run `rank1-eval store drop-failed {store}` and rerun to score them again, or pass "
        "--allow-failed to accept them"
    )
