"""Test-time compute from one run: the judgement at every smaller reasoning budget, derived from a max-budget run.

Decoding is greedy, so the first ``g`` generated tokens of a run with a larger budget *are* the run with budget
``g``. For a pair whose prompt has ``p`` tokens, a run with ``max_output_tokens = b`` generates at most
``g_b = min(b, context_size - p)`` tokens (the length rule, :meth:`ScoringConfig.generation_budget`). From the
judgement of a run at ``B >= b`` (same prompt, same settings otherwise):

* pass 1 ended by itself (stop string or EOS) after ``n <= g_b`` tokens, or was cut at exactly ``n == g_b``:
  the run at ``b`` produces the same completion, hence the same judgement — it is *kept* as is;
* otherwise pass 1 at ``b`` is the first ``g_b`` of the stored token ids, ending on the budget: its text is
  their decoding and the rank1 rule gives the forced answer — one prefill-only request, no decoding (*cut*);
* a pair the store lacks at ``B``, or whose stored judgement kept no token ids, is judged for real at ``b``
  (*run*; counted, so a sweep never silently mixes in anything else).

Each budget's judgements are stored under the key a real run at that budget has (the key holds
``max_output_tokens``), so a later real run at ``b`` is a store hit, and a budget already run for real is not
derived again. Every budget gets the result folder a real run at that budget would have
(:func:`rank1_eval.layout.run_folder`: metrics through mteb, traces, a summary that says it was derived) and one
row of ``sweep.json`` / ``sweep.csv`` / ``sweep.png`` in the run's own folder.

Exactness needs batch-invariant numerics: the derivation assumes the run at ``b`` would have generated the
same tokens as the first ``g_b`` of the run at ``B``. On CPU in float32 (the tests, both engines) it does. On
GPUs, reduced-precision kernels whose results depend on the batch's composition (vLLM's continuous batching
changes it from step to step) can flip a near-tie greedy choice, so a real run at ``b`` may itself differ from
another real run at ``b``; ``--verify N`` re-runs N sampled pairs per budget for real and reports the
differences.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rank1_eval.records import Completion, Judgement, decode_ids
from rank1_eval.scoring import PreparedPrompt

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.json"  # read by `rank1-eval report` (rank1_eval.report.data.read_sweep)
SWEEP_CSV = "sweep.csv"
SWEEP_PLOT = "sweep.png"
_TREC_NAMES = {"ndcg_at_10": "ndcg_cut_10", "map_at_100": "map_cut_100", "recall_at_100": "recall_100"}
TABLE_METRICS = ("ndcg_at_10", "ndcg_at_20", "map_at_100", "mrr_at_10", "recall_at_100")


class SweepError(ValueError):
    """A sweep that cannot be done as asked (budget above the run's, budget forcing on, no result folder...)."""


def parse_budgets(text: str) -> list[int]:
    """``"256,512,1024"`` -> ``[256, 512, 1024]`` (sorted, unique, each >= 1)."""
    try:
        values = sorted({int(v) for v in text.replace(" ", "").split(",") if v})
    except ValueError:
        raise SweepError(f"--budgets takes comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise SweepError(f"--budgets needs budgets >= 1, got {text!r}")
    return values


@dataclass
class DeriveCost:
    """What deriving one budget cost: pairs kept, cut (one prefill each) or run for real, and the engine work."""

    kept: int = 0
    cut: int = 0
    run: int = 0
    prefill_requests: int = 0
    prefill_tokens: int = 0  # prompt tokens of the forced answers (what the prefills process)
    run_generated_tokens: int = 0  # tokens decoded for pairs judged for real
    engine_s: float = 0.0
    engine_load_s: float = 0.0  # when this budget was the first to need the engine

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep_kept": self.kept,
            "sweep_cut": self.cut,
            "sweep_run": self.run,
            "sweep_prefill_requests": self.prefill_requests,
            "sweep_prefill_tokens": self.prefill_tokens,
            "sweep_generated_tokens": self.run_generated_tokens,
            "sweep_engine_s": round(self.engine_s, 3),
            "sweep_engine_load_s": round(self.engine_load_s, 3),
        }


@dataclass
class Deriver:
    """What judges the pairs the store lacks (``evaluate(..., missing=)``) for a budget below the source run's:
    derives judgements, runs what it cannot. Derived judgements carry ``derived_from`` (the run's budget).

    ``source`` is the model at the run's budget (its keys find the stored run), ``store`` the judgement store.
    ``derived`` keeps each derived judgement by prompt, with how it came about, for ``--verify``.
    """

    source: Any
    store: Any
    cost: DeriveCost = field(default_factory=DeriveCost)
    derived: dict[str, tuple[Judgement, str]] = field(default_factory=dict)
    deriving: bool = False  # True while a derived (kept or cut) judgement is reported: not decoded now

    def __call__(self, judge: Any, prepared: Sequence[PreparedPrompt], final: Callable[[int, Judgement], None]):
        """``judge``: the :class:`rank1_eval.judge.Judge` at the budget being derived."""
        from rank1_eval.engines.base import run_requests
        from rank1_eval.scheduler import Scheduler

        config, keep_ids = judge.scoring, judge.settings.keep_token_ids
        top = self.source.scoring.max_output_tokens
        keys = self.source.core.keys(prepared)
        stored = self.store.get_many(list(set(keys))) if self.store is not None else {}
        # the tokenizer alone derives the kept and cut pairs; the engine loads only for prefills and real runs
        rule = judge.rule
        tok = rule.tokenizer
        to_run: list[int] = []
        pending: list[tuple[int, Any, Any]] = []  # (index, pair state, forced request)
        for i, (p, key) in enumerate(zip(prepared, keys, strict=True)):
            src = stored.get(key)
            budget = config.generation_budget(p.prompt_tokens)
            if src is None or src.rounds is not None:
                to_run.append(i)
                continue
            n = src.output_tokens
            if n <= budget and (src.finish_reason == "stop" or n == budget):
                j = replace(src, token_ids=src.token_ids if keep_ids else None, derived_from=src.derived_from or top)
                self._final(final, i, p, j, "kept")
                continue
            if n < budget or src.token_ids is None or len(src.token_ids) != n:
                to_run.append(i)  # the run stopped short of this budget on a budget of its own, or kept no ids
                continue
            ids = tuple(src.token_ids[:budget])
            text = decode_ids(tok, ids)
            state = rule.pair(p, keep_token_ids=keep_ids)
            state.start()
            out = state.advance(Completion(text, ids, "length", None, {}, p.prompt_tokens))
            if isinstance(out, Judgement):  # not reached: a pass 1 cut by its budget never answered
                self._final(final, i, p, replace(out, derived_from=top), "cut")
            else:
                pending.append((i, state, out))
        if (pending or to_run) and not judge.loaded:
            t0 = time.perf_counter()
            judge.engine  # noqa: B018 -- loads the engine (shared with the source model and every budget)
            rule = judge.rule
            self.cost.engine_load_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        if pending:
            completions = run_requests(judge.engine, [r for _, _, r in pending])
            self.cost.prefill_requests += len(pending)
            self.cost.prefill_tokens += sum(len(ids) for ids in tok([r.prompt for _, _, r in pending]).input_ids)
            for (i, state, _), completion in zip(pending, completions, strict=True):
                j = state.advance(completion)
                assert isinstance(j, Judgement)
                self._final(final, i, prepared[i], replace(j, derived_from=top), "cut")
        if to_run:
            log.warning(
                "%d pair(s) not derivable from the stored run (missing, or no token ids): judged for real", len(to_run)
            )
            scheduler = Scheduler(
                judge.engine,
                rule,
                keep_token_ids=keep_ids,
                on_final=lambda k, j: self._final(final, to_run[k], prepared[to_run[k]], j, "run"),
            )
            scheduler.run([prepared[i] for i in to_run])
            self.cost.run_generated_tokens += scheduler.stats.generated_tokens
        self.cost.engine_s += time.perf_counter() - t0

    def _final(self, final: Callable[[int, Judgement], None], i: int, p: PreparedPrompt, j: Judgement, how: str):
        setattr(self.cost, how, getattr(self.cost, how) + 1)
        self.derived[p.prompt] = (j, how)
        self.deriving = how != "run"  # read by _SweepProgress while final() reports the judgement
        try:
            final(i, j)
        finally:
            self.deriving = False


class _SweepProgress:
    """The run's display during one budget: derived judgements move the bar as *derived*, never as decoded
    (pairs/s and gen tok/s count only what the engine judged for real)."""

    def __init__(self, inner: Any, deriver: Deriver) -> None:
        self.__dict__["_inner"], self.__dict__["_deriver"] = inner, deriver

    def judged(self, judgement: Judgement, pairs: int = 1, generated_tokens: int | None = None) -> None:
        if self._deriver.deriving:
            self._inner.derived(judgement, pairs)
        else:
            self._inner.judged(judgement, pairs, generated_tokens)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:  # evaluate sets ``total``: the display's
        setattr(self._inner, name, value)


def _source(cost: DeriveCost) -> str:
    """How a budget's judgements came about, as its row says: derived, judged for real, or both."""
    derived = cost.kept + cost.cut
    if derived and cost.run:
        return f"mixed ({derived} derived, {cost.run} judged for real)"
    return "derived" if derived or not cost.run else "judged for real (not derivable)"


def verify(model: Any, deriver: Deriver, n: int, *, seed: int = 0) -> dict[str, Any]:
    """Re-run ``n`` sampled derived pairs for real at the model's budget; the differences (cut pairs first)."""
    from rank1_eval.scheduler import Scheduler

    rng = random.Random(seed)
    by_kind: dict[str, list[str]] = {"cut": [], "kept": []}
    for prompt, (_, how) in deriver.derived.items():
        if how in by_kind:
            by_kind[how].append(prompt)
    for prompts in by_kind.values():
        rng.shuffle(prompts)
    chosen = (by_kind["cut"] + by_kind["kept"])[:n]
    if not chosen:
        return {"pairs": 0}
    tok = model.scorer.rule.tokenizer
    prepared = [PreparedPrompt(p, len(tok(p).input_ids), False) for p in chosen]
    t0 = time.perf_counter()
    real = Scheduler(model.engine, model.scorer.rule).run(prepared)
    seconds = time.perf_counter() - t0
    pairs = [(deriver.derived[p][0], r) for p, r in zip(chosen, real, strict=True)]
    diffs, mismatches = [], []
    for prompt, r in zip(chosen, real, strict=True):
        d = deriver.derived[prompt][0]
        diff = abs(d.score - r.score)
        diffs.append(diff)
        if d.path != r.path or d.reasoning != r.reasoning or diff > 1e-6:
            mismatches.append(
                {
                    "prompt_tail": prompt[-80:],
                    "derived_path": d.path,
                    "real_path": r.path,
                    "same_reasoning": d.reasoning == r.reasoning,
                    "score_diff": diff,
                }
            )
    return {
        "pairs": len(chosen),
        "cut_pairs": sum(deriver.derived[p][1] == "cut" for p in chosen),
        "same_path": sum(d.path == r.path for d, r in pairs),
        "same_reasoning": sum(d.reasoning == r.reasoning for d, r in pairs),
        "max_abs_score_diff": max(diffs),
        "mismatches": mismatches[:10],
        "real_s": round(seconds, 3),
    }


def _row(budget: int, summary: Mapping[str, Any], source: str) -> dict[str, Any]:
    """One budget's row: metrics, reasoning lengths, pass-2 share, change vs the first stage, cost."""
    metrics = summary.get("metrics", {})
    main = summary.get("main_metric")
    names = [m for m in dict.fromkeys([main, *TABLE_METRICS]) if m and m in metrics]
    pairs = summary.get("pairs_total") or 0
    forced = (summary.get("pass2") or 0) + (summary.get("failed") or 0)
    vs = summary.get("vs_first_stage") or {}
    row: dict[str, Any] = {
        "budget": budget,
        "source": source,
        "metrics": {m: metrics[m] for m in names},
        "main_score": summary.get("main_score"),
        "reasoning_tokens_mean": summary.get("output_tokens_mean"),
        "reasoning_tokens_p95": summary.get("output_tokens_p95"),
        "pass2_share": round(forced / pairs, 4) if pairs else None,
        "pass2": summary.get("pass2"),
        "failed": summary.get("failed"),
        "pairs": pairs,
        # what a real run at this budget decodes: every pass-1 token plus one per forced answer
        "generated_tokens": (summary.get("output_tokens_total") or 0) + forced,
    }
    if vs:
        row["vs_first_stage_delta"] = vs.get("mean_delta")
        row["vs_first_stage_wins"] = vs.get("wins")
        row["vs_first_stage_losses"] = vs.get("losses")
        row["vs_first_stage_p"] = (vs.get("randomization") or {}).get("p_value")
    return row


def check_budgets(budgets: Sequence[int], top: int, force_rethink: int = 0, answer_rule: str = "rank1") -> None:
    """Budgets a run at ``top`` can be cut to; a budget-forced run, or one under the reference's answer rule (which
    may score a cut pass 1 from logprobs the stored run never kept), cannot be cut at all."""
    if force_rethink:
        raise SweepError("a budget sweep derives plain runs; force_rethink runs cannot be cut to a smaller budget")
    if answer_rule != "rank1":
        raise SweepError(
            f"a budget sweep derives runs under answer_rule 'rank1'; under {answer_rule!r} a pass 1 cut by a smaller "
            "budget may be scored from its last position's top-20 logprobs, which the stored run did not keep"
        )
    above = [b for b in budgets if b > top]
    if above:
        raise SweepError(
            f"budget(s) {above} exceed the run's max_output_tokens {top}: a run can only be cut to smaller "
            "budgets; run at the largest budget first"
        )


def sweep(
    model: Any,
    prepared: Any,
    opts: Any,
    budgets: Sequence[int],
    folder: Path,
    *,
    verify_pairs: int = 0,
    base_summary: Mapping[str, Any] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Every budget of ``budgets`` derived from the run of ``model`` (its ``max_output_tokens`` is the maximum).

    ``folder`` is that run's result folder; ``base_summary`` its ``summary.json`` (read from ``folder`` when
    None). Writes each budget's result folder where a real run at that budget would (the layout's settings
    hash), then ``sweep.json``, ``sweep.csv`` and ``sweep.png`` in ``folder`` and the budgets' cost into its
    ``summary.json``. Returns what ``sweep.json`` holds.
    """
    from rank1_eval.evaluate import evaluate, store_path_of
    from rank1_eval.outputs import write_json
    from rank1_eval.store import SQLiteStore

    top = model.scoring.max_output_tokens
    check_budgets(budgets, top, model.scoring.force_rethink, model.scoring.answer_rule)
    folder = Path(folder)
    summary_path = folder / "summary.json"
    if base_summary is None:
        if not summary_path.is_file():
            raise SweepError(f"{folder} has no summary.json: not a result folder")
        base_summary = json.loads(summary_path.read_text(encoding="utf-8"))
    store_path = store_path_of(opts)
    rows = [_row(top, base_summary, "run")]
    checks = []
    started = time.perf_counter()
    for b in sorted(set(budgets) - {top}, reverse=True):
        t0 = time.perf_counter()
        variant = model.with_scoring(max_output_tokens=b)
        store = SQLiteStore(store_path)
        deriver = Deriver(model, store)
        try:  # the variant shares the model's engine: the first budget that needs it loads it for all
            shown = _SweepProgress(progress, deriver) if progress is not None else None
            summary = evaluate(variant, prepared, opts, progress=shown, missing=deriver)
        finally:
            store.close()
        # the budget's own folder says how it was made: derived judgements are counted as derived, never as
        # scored; the engine decoded only the forced answers' one token each and the pairs judged for real
        cost = deriver.cost
        this_run = summary.get("this_run", {})
        this_run["generated_tokens"] = cost.run_generated_tokens + cost.prefill_requests
        this_run["pairs_scored"] = summary["pairs_scored"] = cost.run
        this_run["pairs_derived"] = summary["pairs_derived"] = cost.kept + cost.cut
        engine_s = this_run.get("engine_s") or 0.0
        this_run["docs_per_s"] = round(cost.run / engine_s, 3) if engine_s and cost.run else None
        this_run["generated_tokens_per_s"] = round(this_run["generated_tokens"] / engine_s, 1) if engine_s else None
        summary["derived_from"] = {"max_output_tokens": top, "folder": str(folder), **deriver.cost.to_dict()}
        budget_folder = Path(summary["output_dir"])
        write_json(budget_folder / "summary.json", {k: v for k, v in summary.items() if k != "output_dir"})
        row = _row(b, summary, _source(deriver.cost))
        row.update(deriver.cost.to_dict())
        row["sweep_from_store"] = summary.get("pairs_from_store")
        row["folder"] = budget_folder.name  # beside the run's folder, in its task folder
        row["sweep_wall_s"] = round(time.perf_counter() - t0, 3)
        if verify_pairs:
            check = {"budget": b, **verify(variant, deriver, verify_pairs)}
            checks.append(check)
            row["verify_pairs"] = check["pairs"]
            row["verify_max_abs_score_diff"] = check.get("max_abs_score_diff")
            row["verify_mismatches"] = len(check.get("mismatches", []))
        rows.append(row)
    rows.sort(key=lambda r: r["budget"])
    result = {
        "task": base_summary.get("task"),
        "metric": base_summary.get("main_metric"),
        "max_budget": top,
        "model": model.model_name_or_path,
        "budgets": rows,
        "first_stage": _first_stage(base_summary),
        "sweep_wall_s": round(time.perf_counter() - started, 3),
        **({"verify": checks} if verify_pairs else {}),
        "means": "each budget's judgements derived exactly from the run at max_budget (rank1_eval.sweep); "
        "kept: pass 1 ended within the budget; cut: pass 1 cut to the budget's tokens + one forced-answer "
        "prefill; run: judged for real (not derivable)",
    }
    write_json(folder / SWEEP_FILE, result)
    write_csv(folder / SWEEP_CSV, rows)
    plot({str(result["task"]): result}, folder / SWEEP_PLOT)
    if summary_path.is_file():  # the budgets' cost beside the run's own, so one file says what each doubling bought
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        summary["budget_sweep"] = [
            {
                k: r.get(k)
                for k in (
                    "budget",
                    "source",
                    "main_score",
                    "reasoning_tokens_mean",
                    "reasoning_tokens_p95",
                    "pass2_share",
                    "generated_tokens",
                    "sweep_prefill_requests",
                    "sweep_prefill_tokens",
                    "sweep_generated_tokens",
                    "sweep_engine_s",
                    "sweep_wall_s",
                )
                if k in r
            }
            for r in rows
        ]
        write_json(summary_path, summary)
    return result


def _first_stage(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The first stage's value of the paired test's measure (trec_eval name), for the plot's reference line."""
    vs = summary.get("vs_first_stage") or {}
    return {"metric": vs["metric"], "value": vs["mean_b"]} if vs.get("mean_b") is not None else None


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "metrics"}
    out.update(row.get("metrics", {}))
    return out


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """The sweep table, one row per budget (metrics as columns)."""
    from rank1_eval.outputs import atomic_open

    flat = [_flat(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)


def table(result: Mapping[str, Any]) -> str:
    """The sweep as a text table for the terminal."""
    metric = result.get("metric") or "main_score"
    head = (
        f"{'budget':>7} {metric:>12} {'mean tok':>9} {'p95 tok':>8} {'pass2':>6} {'gen tok':>8} "
        f"{'Δ vs 1st':>9} {'derived (kept/cut/run)':>23} {'prefill tok':>11}"
    )
    lines = [head]
    for r in result["budgets"]:
        value = r["metrics"].get(metric, r.get("main_score"))
        how = "the run itself"
        if "sweep_kept" in r:
            how = f"{r.get('sweep_kept', '')}/{r.get('sweep_cut', '')}/{r.get('sweep_run', '')}"
        delta = r.get("vs_first_stage_delta")
        lines.append(
            f"{r['budget']:>7} {_num(value):>12} {_num(r['reasoning_tokens_mean'], 1):>9} "
            f"{_num(r['reasoning_tokens_p95'], 0):>8} {_num(r['pass2_share'], 2):>6} {r['generated_tokens']:>8} "
            f"{_num(delta):>9} {how:>23} {r.get('sweep_prefill_tokens', ''):>11}"
        )
    return "\n".join(lines)


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def plot(sweeps: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Metric against mean reasoning tokens, one line per task, each point labelled with its budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    metrics = set()
    for task, result in sweeps.items():
        metric = result.get("metric") or "main_score"
        metrics.add(metric)
        rows = [r for r in result["budgets"] if r.get("reasoning_tokens_mean") is not None]
        xs = [float(r["reasoning_tokens_mean"]) for r in rows]
        ys = [float(r["metrics"].get(metric, r.get("main_score")) or math.nan) for r in rows]
        (line,) = ax.plot(xs, ys, marker="o", label=task)
        first = result.get("first_stage")
        if first and first.get("metric") == _TREC_NAMES.get(metric):
            ax.axhline(first["value"], color=line.get_color(), linestyle=":", linewidth=1, label=f"{task}: first stage")
        labels: dict[tuple[float, float], list[str]] = {}  # budgets that land on one point share a label
        for r, x, y in zip(rows, xs, ys, strict=True):
            labels.setdefault((x, y), []).append(str(r["budget"]))
        for (x, y), names in labels.items():
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("mean reasoning tokens per pair")
    ax.set_ylabel(" / ".join(sorted(metrics)))
    ax.set_title("rank1: metric against reasoning budget (point labels: max_output_tokens)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def find_run(path: Path) -> Path:
    """The run folder to sweep: ``path`` itself, or the one run in a task folder that no sweep derived; checked
    whole by the one reader every command uses (:func:`rank1_eval.layout.open_run`)."""
    from rank1_eval.layout import ResultsError, list_runs
    from rank1_eval.outputs import open_run

    path = Path(path)
    try:
        if (path / "summary.json").is_file():
            return open_run(path).path
        runs = [r for r in list_runs(path) if "derived_from" not in r.summary]
        if len(runs) == 1:
            return open_run(runs[0].path).path
    except ResultsError as exc:
        raise SweepError(str(exc)) from None
    if not runs:
        raise SweepError(f"{path} holds no run to sweep (no summary.json in it or in a run folder below it)")
    raise SweepError(f"{path} holds {len(runs)} runs ({', '.join(r.path.name for r in runs)}): pass one of them")


def recorded_command(folder: Path) -> tuple[list[str], str | None, dict[str, Any]]:
    """The ``rank1-eval run`` argv that made a result folder, the directory it ran in, and its summary."""
    from rank1_eval.layout import ResultsError, read_summary

    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise SweepError(f"{folder} has no summary.json: not a result folder (pass the folder `run` printed)")
    try:
        summary = read_summary(path)
    except ResultsError as exc:
        raise SweepError(str(exc)) from None
    prov = summary.get("provenance") or {}
    argv = list(prov.get("command_line") or [])
    if len(argv) < 2 or argv[1] != "run":
        raise SweepError(
            f"{path}: the run was not made by `rank1-eval run` (command line {argv}); "
            "use the Python API (rank1_eval.sweep.sweep) instead"
        )
    return argv[1:], prov.get("cwd"), summary


__all__ = ["Deriver", "SweepError", "find_run", "parse_budgets", "plot", "recorded_command", "sweep", "table", "verify"]
