"""Paired comparison of two rankings of the same queries: per-query deltas, win/tie/loss, t-test, randomization.

Two result folders of one task (two models, two settings), a result folder against a run file, or a reranked
run against its own first stage (what the driver records in ``summary["vs_first_stage"]``). Per-query values
come from pytrec_eval (trec_eval semantics, as mteb), on the qrels the driver wrote beside the run
(``qrels.tsv``). The randomization test flips the sign of each query's delta; with few queries it enumerates
every flip (exact, seed-free), otherwise it draws ``n_permutations`` with a fixed seed, so the same inputs
always give the same p-value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rank1_eval.metrics import EvalRules
from rank1_eval.runs import Run

DEFAULT_MEASURE = "ndcg_cut_10"
DEFAULT_PERMUTATIONS = 10_000
DEFAULT_SEED = 0
TIE_EPS = 1e-9  # |delta| at or below this is a tie (float noise of equal rankings)
_EXACT_MAX_QUERIES = 20  # 2**20 sign flips is still quick


class CompareError(ValueError):
    """Two runs that cannot be compared (different tasks, no qrels, no common queries)."""


def trec_measure(metric: str) -> str:
    """mteb-style names (``ndcg_at_10``) -> pytrec_eval's (``ndcg_cut_10``); pytrec_eval names pass through."""
    m = re.fullmatch(r"(ndcg|map|recall|precision|mrr)_at_(\d+)", metric)
    if not m:
        return metric
    name, k = m.groups()
    if name == "mrr":
        raise CompareError("mrr@k has no trec_eval measure; use recip_rank")
    return {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}[name] + f"_{k}"


def mteb_name(measure: str) -> str:
    """pytrec_eval's names (``ndcg_cut_10``) -> the mteb-style ones ``run`` prints (``ndcg_at_10``)."""
    m = re.fullmatch(r"(ndcg_cut|map_cut|recall|P)_(\d+)", measure)
    if not m:
        return measure
    names = {"ndcg_cut": "ndcg", "map_cut": "map", "recall": "recall", "P": "precision"}
    return f"{names[m.group(1)]}_at_{m.group(2)}"


def _label(measure: str) -> str:
    name = mteb_name(measure)
    return measure if name == measure else f"{name} (trec_eval {measure})"


def per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measure: str,
    *,
    rules: EvalRules | None = None,
) -> dict[str, float]:
    """One value per judged query, mteb's rules (:mod:`rank1_eval.metrics`): unranked judged queries count 0."""
    from rank1_eval.metrics import MetricError
    from rank1_eval.metrics import per_query as _per_query

    try:
        return _per_query(run, qrels, measure, rules=rules)
    except MetricError as exc:
        raise CompareError(str(exc)) from exc


def t_test(deltas: Sequence[float]) -> dict[str, float | None]:
    """Paired t-test on the deltas (scipy.stats.ttest_rel); defined when two deltas or more."""
    n = len(deltas)
    if n < 2:
        return {"statistic": None, "p_value": None}
    if max(deltas) - min(deltas) <= TIE_EPS:  # zero variance: scipy would return nan
        mean = sum(deltas) / n
        return {"statistic": 0.0, "p_value": 1.0} if abs(mean) <= TIE_EPS else {"statistic": None, "p_value": 0.0}
    from scipy import stats

    res = stats.ttest_rel(list(deltas), [0.0] * n)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def randomization_test(
    deltas: Sequence[float], n_permutations: int = DEFAULT_PERMUTATIONS, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """Two-sided paired randomization (sign-flip) test of mean(delta) = 0.

    Exact over all 2**n sign assignments when that is at most ``n_permutations`` (p = share of assignments
    whose |mean| reaches the observed one, identity included); otherwise Monte Carlo with ``seed``:
    p = (hits + 1) / (n_permutations + 1).
    """
    import numpy as np

    d = np.asarray(deltas, dtype=float)
    n = len(d)
    if n == 0:
        return {"p_value": None, "n_permutations": 0, "exact": True, "seed": None}
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= _EXACT_MAX_QUERIES and 2**n <= n_permutations:
        codes = np.arange(2**n)[:, None] >> np.arange(n)[None, :]
        signs = 1 - 2 * (codes & 1)
        stats = np.abs((signs * d).mean(axis=1))
        hits = int((stats >= observed - tol).sum())
        return {"p_value": hits / 2**n, "n_permutations": 2**n, "exact": True, "seed": None}
    rng = np.random.default_rng(seed)
    hits, left, chunk = 0, n_permutations, max(1, min(n_permutations, 2_000_000 // max(1, n)))
    while left:
        size = min(chunk, left)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(size, n))
        hits += int((np.abs((signs * d).mean(axis=1)) >= observed - tol).sum())
        left -= size
    return {
        "p_value": (hits + 1) / (n_permutations + 1),
        "n_permutations": n_permutations,
        "exact": False,
        "seed": seed,
    }


def paired(
    values_a: Mapping[str, float],
    values_b: Mapping[str, float],
    *,
    measure: str,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
    with_per_query: bool = True,
) -> dict[str, Any]:
    """The comparison record of two per-query value maps (common queries only; the others are counted)."""
    common = sorted(set(values_a) & set(values_b))
    deltas = [values_a[q] - values_b[q] for q in common]
    n = len(common)
    out: dict[str, Any] = {
        "metric": measure,
        "n_queries": n,
        "queries_only_a": len(set(values_a) - set(values_b)),
        "queries_only_b": len(set(values_b) - set(values_a)),
        "mean_a": sum(values_a[q] for q in common) / n if n else None,
        "mean_b": sum(values_b[q] for q in common) / n if n else None,
        "mean_delta": sum(deltas) / n if n else None,
        "wins": sum(x > TIE_EPS for x in deltas),
        "ties": sum(abs(x) <= TIE_EPS for x in deltas),
        "losses": sum(x < -TIE_EPS for x in deltas),
        "t_test": t_test(deltas),
        "randomization": randomization_test(deltas, n_permutations, seed),
    }
    if with_per_query:
        out["per_query"] = [
            {"qid": q, "a": values_a[q], "b": values_b[q], "delta": d} for q, d in zip(common, deltas, strict=True)
        ]
    return out


def against_first_stage(
    predictions: Run,
    first_stage: Run,
    qrels: Mapping[str, Mapping[str, int]],
    *,
    measure: str = DEFAULT_MEASURE,
    rules: EvalRules | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The reranked run (a) against the first stage it reranked (b): what ``summary.json`` keeps.

    ``qrels`` are the judgements of the evaluated queries (the driver passes exactly those), so both sides are
    scored on the same queries as mteb scores the reranked run, judged queries without candidates included.
    ``mean_b`` is the first stage's value of ``measure``: the first-stage rows of the paper tables.
    """
    reranked = per_query(predictions, qrels, measure, rules=rules)
    fs = per_query(first_stage, qrels, measure, rules=rules)
    out = paired(reranked, fs, measure=measure, n_permutations=n_permutations, seed=seed, with_per_query=False)
    return {"a": "reranked", "b": "first stage", "eval_rules": (rules or EvalRules()).to_dict(), **out}


# ----------------------------------------------------------------------------------------------------
# Result folders
# ----------------------------------------------------------------------------------------------------


def _summary(folder: Path) -> dict[str, Any]:
    """The folder's summary once the folder is checked whole (not truncated, not mixed with another run)."""
    from rank1_eval.outputs import check_result_folder

    return check_result_folder(folder) if (folder / "summary.json").is_file() else {}


def folder_run(folder: Path) -> Run:
    """The reranked run of a result folder (``predictions.json``: exact ids; else ``run.trec``)."""
    from rank1_eval.runs import read_run

    for name in ("predictions.json", "run.trec"):
        if (folder / name).is_file():
            return read_run(folder / name)
    raise CompareError(f"{folder} has neither run.trec nor predictions.json: not a result folder")


def folder_first_stage(folder: Path) -> Run:
    """The first stage a result folder reranked, from its traces (score, else minus the first-stage rank)."""
    path = folder / "traces.jsonl"
    if not path.is_file():
        raise CompareError(f"{folder} has no traces.jsonl to read its first stage from")
    from rank1_eval.outputs import read_jsonl

    run: Run = {}
    for t in read_jsonl(path):  # a truncated line is one clear error, not a JSONDecodeError
        score = t.get("first_stage_score")
        if score is None:
            rank = t.get("first_stage_rank")
            if rank is None:
                raise CompareError(f"{path}: pair {t.get('qid')}/{t.get('docid')} has no first-stage rank")
            score = -float(rank)
        run.setdefault(str(t["qid"]), {})[str(t["docid"])] = float(score)
    return run


def folder_qrels(folder: Path) -> dict[str, dict[str, int]] | None:
    """The judgements a result folder was scored with: its ``qrels.tsv``, else the local task's qrels file."""
    from rank1_eval.beir import read_qrels

    if (folder / "qrels.tsv").is_file():
        return read_qrels(folder / "qrels.tsv")
    prov = _summary(folder).get("provenance", {})
    source, split = prov.get("task_source"), prov.get("split") or "test"
    if source and source != "mteb" and (Path(source) / "qrels" / f"{split}.tsv").is_file():
        return read_qrels(Path(source) / "qrels" / f"{split}.tsv")
    return None


def _task_id(summary: Mapping[str, Any]) -> tuple[Any, ...] | None:
    prov = summary.get("provenance", {})
    if not prov:
        return None
    return (prov.get("task"), prov.get("subset"), prov.get("split"))


def compare(
    dir_a: str | os.PathLike[str],
    dir_b: str | os.PathLike[str] | None = None,
    *,
    metric: str = DEFAULT_MEASURE,
    qrels: str | os.PathLike[str] | None = None,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
    allow_different_tasks: bool = False,
    allow_partial: bool = False,
) -> dict[str, Any]:
    """Compare result folder ``dir_a`` with ``dir_b`` (a result folder or a run file; None: A's first stage).

    A folder is a run folder or a task folder holding one complete run (:func:`rank1_eval.layout.resolve_run_folder`;
    partial runs only with ``allow_partial``). Deltas are a - b per query; ``metric`` is a trec_eval measure or an
    mteb-style name (``ndcg_at_10``).
    """
    from rank1_eval.beir import read_qrels
    from rank1_eval.layout import ResultsError
    from rank1_eval.outputs import open_run
    from rank1_eval.runs import RunFileError, read_run

    try:  # the one reader: resolved, and checked whole (a `{}` or foreign summary, mixed or truncated files)
        a = open_run(dir_a, allow_partial=allow_partial).path
        if dir_b is not None and Path(dir_b).is_dir():
            dir_b = open_run(dir_b, allow_partial=allow_partial).path
    except ResultsError as exc:
        raise CompareError(str(exc)) from None
    measure = trec_measure(metric)
    summary_a = _summary(a)  # checked whole first: a truncated or mixed folder is refused before it is read
    run_a = folder_run(a)
    if dir_b is None:
        b_label, run_b, summary_b = f"{a} (first stage)", folder_first_stage(a), {}
    else:
        b = Path(dir_b)
        if b.is_dir():
            b_label, run_b, summary_b = str(b), folder_run(b), _summary(b)
        elif b.is_file():
            try:
                run_b = read_run(b, subset=summary_a.get("provenance", {}).get("subset"))
            except RunFileError as exc:
                raise CompareError(str(exc)) from exc
            b_label, summary_b = str(b), {}
        else:
            raise CompareError(f"{b} is neither a result folder nor a run file")
        ta, tb = _task_id(summary_a), _task_id(summary_b)
        if ta and tb and ta != tb and not allow_different_tasks:
            raise CompareError(f"different tasks: {a} is {ta}, {b} is {tb} (pass --force to compare anyway)")
    # Each side is scored on the queries its own run evaluated (its qrels.tsv), as mteb scored it: a judged query
    # the run left unranked counts 0. The paired test then uses the queries both sides evaluated.
    if qrels is not None:
        judged_a = judged_b = read_qrels(qrels)
    else:
        own_b = folder_qrels(Path(dir_b)) if dir_b is not None and Path(dir_b).is_dir() else None
        judged_a = folder_qrels(a) or own_b
        if judged_a is None:
            raise CompareError(f"no qrels.tsv in {a} (older result folder?): pass --qrels PATH")
        judged_b = own_b or judged_a
    rules = EvalRules.from_summary(summary_a)
    if summary_b and EvalRules.from_summary(summary_b) != rules and not allow_different_tasks:
        raise CompareError(f"{a} and {dir_b} were scored with different rules (ignore_identical_ids)")
    values_a = per_query(run_a, judged_a, measure, rules=rules)
    values_b = per_query(run_b, judged_b, measure, rules=rules)
    if not set(values_a) & set(values_b):
        raise CompareError("the two runs share no judged query")
    out = paired(values_a, values_b, measure=measure, n_permutations=n_permutations, seed=seed)
    result = {"a": str(a), "b": b_label, "task": summary_a.get("task"), "eval_rules": rules.to_dict(), **out}
    result["model_a"] = model_label(summary_a)
    result["model_b"] = model_label(summary_b) if summary_b else ("first stage" if dir_b is None else "run file")
    result["candidates"] = same_candidates(run_a, run_b)
    return result


def model_label(summary: Mapping[str, Any]) -> str | None:
    """Who ranked a folder: ``<model> (rank1)`` or ``<model> (baseline: mteb cross-encoder)``."""
    prov = summary.get("provenance") or {}
    model = (summary.get("mteb") or {}).get("name") or prov.get("model")
    if not model:
        return None
    return f"{model} ({'baseline: mteb cross-encoder' if summary.get('model_kind') else 'rank1'})"


def same_candidates(run_a: Run, run_b: Run) -> dict[str, Any]:
    """Whether two rankings reranked the same (query, passage) pairs: a fair comparison of rerankers needs it."""
    queries = set(run_a) & set(run_b)
    differ = sorted(q for q in queries if set(run_a[q]) != set(run_b[q]))
    return {
        "identical": not differ and set(run_a) == set(run_b),
        "queries_differing": len(differ),
        "examples": differ[:3],
        "pairs_a": sum(len(v) for v in run_a.values()),
        "pairs_b": sum(len(v) for v in run_b.values()),
    }


def _f(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def format_comparison(result: Mapping[str, Any], per_query_rows: bool = True) -> str:
    """A terminal/Markdown-friendly table of the comparison."""
    rnd, tt = result["randomization"], result["t_test"]
    kind = "exact" if rnd["exact"] else f"{rnd['n_permutations']} permutations, seed {rnd['seed']}"
    who_a, who_b = result.get("model_a"), result.get("model_b")
    cand = result.get("candidates")
    lines = [
        f"A: {result['a']}" + (f"  [{who_a}]" if who_a else ""),
        f"B: {result['b']}" + (f"  [{who_b}]" if who_b else ""),
        f"metric {_label(result['metric'])} over {result['n_queries']} common queries"
        + (
            f" ({result['queries_only_a']} only in A, {result['queries_only_b']} only in B)"
            if result["queries_only_a"] or result["queries_only_b"]
            else ""
        ),
        "",
        "| | A | B | A − B |",
        "|:--|--:|--:|--:|",
        f"| mean | {_f(result['mean_a'])} | {_f(result['mean_b'])} | {_f(result['mean_delta'], 4)} |",
        "",
        f"wins/ties/losses (A vs B): {result['wins']}/{result['ties']}/{result['losses']}",
        f"paired t-test: t = {_f(tt['statistic'], 3)}, p = {_p(tt['p_value'])}",
        f"paired randomization test ({kind}): p = {_p(rnd['p_value'])}",
    ]
    if cand is not None:
        same = f"candidates: the same {cand['pairs_a']} (query, passage) pairs on both sides"
        differ = (
            f"candidates DIFFER: {cand['pairs_a']} pairs in A, {cand['pairs_b']} in B, "
            f"{cand['queries_differing']} queries with other passages (e.g. {', '.join(cand['examples'])})"
        )
        lines.insert(3, same if cand["identical"] else differ)
    if per_query_rows and result.get("per_query"):
        lines += ["", "| query | A | B | Δ |", "|:--|--:|--:|--:|"]
        lines += [f"| {r['qid']} | {_f(r['a'])} | {_f(r['b'])} | {r['delta']:+.4f} |" for r in result["per_query"]]
    return "\n".join(lines) + "\n"
