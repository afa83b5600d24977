"""The public ``rank1`` class: seed-compatible constructor, ``predict``/``judge``, mteb's CrossEncoderProtocol.

Construction is cheap and offline: settings are validated, weights load at the first ``predict``/``judge``.
Judgements go through an optional store (content-addressed by everything that determines them), so a rerun
scores only what is missing.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rank1_eval import prompts as P
from rank1_eval.engines import EngineConfig, load_engine, resolve_engine_name
from rank1_eval.progress import Progress
from rank1_eval.records import Judgement
from rank1_eval.registry import model_meta_for
from rank1_eval.registry import pin_revision as _pin_revision
from rank1_eval.scheduler import Scheduler
from rank1_eval.scoring import LENGTH_RULES, PreparedPrompt, Rule, Scorer, ScoringConfig, rule_budget
from rank1_eval.store import AsyncWriter

if TYPE_CHECKING:
    from rank1_eval.engines.base import Engine
    from rank1_eval.store import Store

log = logging.getLogger(__name__)

DEFAULT_MODEL = "jhu-clsp/rank1-7b"
SCHEDULING = {
    "stream": "requests stream into the engine, a pair's forced answer right after its pass 1, each judgement "
    "stored when final",
    "chunked": "synchronous chunks of chunk_size pairs: a chunk's pass 1, then its forced answers, then the next",
}
COMMIT_INTERVAL_S = 0.5  # judgements become durable in the store at most this long after they are final

# Constructor settings that change judgements, with their defaults: a model built with other values is an mteb
# "experiment" (``ModelMeta.experiment_kwargs``), as ``mteb.get_model(name, **kwargs)`` would make it.
OUTCOME_DEFAULTS: dict[str, Any] = {
    "context_size": 16000,
    "max_output_tokens": 8192,
    "dataset_prompt": None,
    "prompt_set": "code",
    "prompt_key": None,
    "failed_score": 0.5,
    "length_rule": "reference",
    "force_rethink": 0,
    "answer_rule": "rank1",
}


def default_dtype(device: str) -> str:
    """``fp_options`` when none is given: float16 on CUDA (the paper's), float32 on CPU (no fast float16 there)."""
    return "float16" if device.startswith("cuda") else "float32"


class ModelLoadError(RuntimeError):
    """The model could not be had (not downloadable offline, missing files, bad path)."""


def _percentile(values: Sequence[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))]) if ordered else 0.0


@dataclass
class RunStats:
    """Counters of one or more ``judge`` calls: the result's judgements, and this invocation's own work.

    ``add_result`` sees every judgement the caller gets back (store hits included: stored judgements carry
    their tokens and path), so path and token figures describe the result; ``add_scored`` sees only what this
    invocation generated, with the engine time it took.
    """

    pairs_total: int = 0
    pairs_scored: int = 0  # judgements generated now (unique prompts)
    pairs_from_store: int = 0
    duplicates: int = 0
    # the result: every pair's judgement
    pass1: int = 0
    pass2: int = 0
    failed: int = 0
    truncated: int = 0
    reasoning_cut: int = 0
    output_tokens: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    cut_by_rule: dict[str, int] = field(default_factory=dict)  # passages each length rule cuts, for these pairs
    # this invocation
    scored_paths: dict[str, int] = field(default_factory=lambda: {"pass1": 0, "pass2": 0, "failed": 0})
    generated_tokens: int = 0  # pass-1 tokens plus one per forced answer, generated now
    engine_s: float = 0.0
    wall_s: float = 0.0
    load_s: float = 0.0  # loading the engine (weights, servers), not part of wall_s
    scheduling: str | None = None
    occupancy: dict[str, Any] | None = None

    def add(self, judgements: Iterable[Judgement]) -> None:
        """The result's figures (kept for callers of the former API)."""
        self.add_result(judgements)

    def add_result(self, judgements: Iterable[Judgement]) -> None:
        for j in judgements:
            setattr(self, j.path, getattr(self, j.path) + 1)
            self.truncated += j.truncated
            self.reasoning_cut += j.reasoning_cut
            self.output_tokens.append(j.output_tokens)
            self.prompt_tokens.append(j.prompt_tokens)

    def add_scored(self, judgement: Judgement) -> None:
        self.pairs_scored += 1
        self.scored_paths[judgement.path] += 1
        self.generated_tokens += judgement.output_tokens + (judgement.path != "pass1")

    def summary(self) -> dict[str, Any]:
        toks = self.output_tokens
        return {
            "pairs_total": self.pairs_total,
            "pairs_scored": self.pairs_scored,
            "pairs_from_store": self.pairs_from_store,
            "duplicates": self.duplicates,
            "pass1": self.pass1,
            "pass2": self.pass2,
            "failed": self.failed,
            "truncated": self.truncated,
            "reasoning_cut": self.reasoning_cut,
            "output_tokens_total": int(sum(toks)),
            "output_tokens_mean": round(statistics.fmean(toks), 2) if toks else 0.0,
            "output_tokens_p50": _percentile(toks, 0.5),
            "output_tokens_p95": _percentile(toks, 0.95),
            "output_tokens_max": max(toks, default=0),
            "prompt_tokens_mean": round(statistics.fmean(self.prompt_tokens), 2) if self.prompt_tokens else 0.0,
            "passages_cut_by_rule": dict(self.cut_by_rule),
            "this_run": self.this_run(),
        }

    def this_run(self) -> dict[str, Any]:
        """What this invocation did itself: judgements generated, engine time and rates (store hits excluded)."""
        run: dict[str, Any] = {
            "pairs_scored": self.pairs_scored,
            "pairs_from_store": self.pairs_from_store,
            "duplicates": self.duplicates,
            **self.scored_paths,
            "generated_tokens": self.generated_tokens,
            "engine_s": round(self.engine_s, 3),
            "wall_s": round(self.wall_s, 3),
            "docs_per_s": round(self.pairs_scored / self.engine_s, 3) if self.engine_s else None,
            "generated_tokens_per_s": round(self.generated_tokens / self.engine_s, 1) if self.engine_s else None,
            "harness_overhead_s": round(max(0.0, self.wall_s - self.engine_s), 3),
            "engine_load_s": round(self.load_s, 3),
            "scheduling": self.scheduling,
        }
        if self.occupancy is not None:
            run["engine_occupancy"] = self.occupancy
        return run


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether a judgement key belongs to shard ``(i, n)``: the key's first 64 bits modulo ``n``."""
    i, n = shard
    return int(key[:16], 16) % n == i


def _query_part(prompt: str) -> str:
    """The prompt up to the passage: what all pairs of one query share."""
    return prompt[: prompt.find("\nPassage: ")]


def _is_local(path: str) -> bool:
    return os.path.isdir(path)


def weights_fingerprint(path: str) -> str:
    """A cheap identity of a local model folder: names, sizes and the head/tail bytes of every file."""
    h = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if not file.is_file():
            continue
        size = file.stat().st_size
        h.update(f"{file.relative_to(path)}:{size}".encode())
        with file.open("rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read())
    return h.hexdigest()


def _check_text(value: Any, what: str, index: int) -> None:
    if not isinstance(value, str):
        raise TypeError(f"pair {index}: {what} must be a str, got {type(value).__name__}")


def _normalise_pairs(pairs: Sequence[Any]) -> tuple[list[str], list[str | Mapping[str, str]], list[str | None]]:
    """Validate seed-style input: (query, doc) or (query, doc, instruction); doc may be a dict with text."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError("predict/judge take a list of (query, doc) or (query, doc, instruction) tuples")
    queries, docs, instructions = [], [], []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) not in (2, 3):
            got = f"{len(pair)} items" if isinstance(pair, (tuple, list)) else type(pair).__name__
            raise ValueError(f"pair {i}: expected (query, doc) or (query, doc, instruction), got {got}")
        query, doc = pair[0], pair[1]
        instruction = pair[2] if len(pair) == 3 else None
        _check_text(query, "query", i)
        if isinstance(doc, Mapping):
            if not isinstance(doc.get("text"), str):
                raise TypeError(f"pair {i}: a dict doc needs a str 'text' key")
        else:
            _check_text(doc, "doc", i)
        if instruction is not None:
            _check_text(instruction, "instruction", i)
        queries.append(query)
        docs.append(doc)
        instructions.append(instruction)
    return queries, docs, instructions


def _loader_columns(loader: Any) -> dict[str, list[Any]]:
    """All rows of an mteb DataLoader as columns (batches are dicts of lists)."""
    columns: dict[str, list[Any]] = {}
    for batch in loader:
        for key, values in batch.items():
            columns.setdefault(key, []).extend(values)
    return columns


class rank1:  # noqa: N801 -- the seed's public name; ``Rank1`` is the PEP 8 alias
    """rank1 reasoning reranker: P(true) after a ``<think>`` reasoning chain, with every trace kept."""

    def __init__(
        self,
        model_name_or_path: str = DEFAULT_MODEL,
        num_gpus: int = 1,
        device: str | None = "cuda",
        context_size: int = 16000,
        max_output_tokens: int = 8192,
        fp_options: str | None = None,
        engine: str = "auto",
        dataset_prompt: str | bool | None = None,
        prompt_set: str = "code",
        prompt_file: str | Path | None = None,
        *,
        prompt_key: str | None = None,
        revision: str | None = None,
        failed_score: float | str = 0.5,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
        max_num_seqs: int | None = None,
        trust_remote_code: bool = False,
        kv_cache_memory_bytes: int | None = None,
        batch_size: int = 16,
        chunk_size: int | None = None,
        scheduling: str = "stream",
        length_rule: str = "reference",
        keep_token_ids: bool = False,
        force_rethink: int = 0,
        answer_rule: str = "rank1",
        ngram_speculation: int = 0,
        store: Store | None = None,
        server_urls: Sequence[str] = (),
        api_key_env: str = "RANK1_API_KEY",
        max_concurrency: int | None = None,
        request_timeout: float | None = None,
        max_retries: int = 5,
        stall_warning_s: float | None = None,
        data_parallel: int = 1,
        engine_kwargs: Mapping[str, Any] | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        # mteb's loader passes the registry name positionally and `revision=` by keyword.
        if kwargs:
            raise TypeError(f"unknown argument(s) for rank1: {', '.join(sorted(kwargs))}")
        self.model_name_or_path = model_name or model_name_or_path
        self.revision = revision
        if isinstance(server_urls, str):
            server_urls = (server_urls,)
        # unknown names, and URLs or data parallelism an engine would ignore, fail here, before any loading
        self.engine_name = resolve_engine_name(engine, server_urls=server_urls, data_parallel=data_parallel)
        if dataset_prompt is True:
            dataset_prompt = None
        if isinstance(dataset_prompt, str) and P.PLACEHOLDER not in dataset_prompt:
            raise P.PromptError(f"dataset_prompt must contain {P.PLACEHOLDER}")
        self.dataset_prompt = dataset_prompt
        self.prompt_set = prompt_set
        self.templates = P.load_prompt_set(prompt_set, prompt_file)
        if prompt_key is not None and prompt_key not in self.templates:
            keys = ", ".join(sorted(self.templates))
            raise P.PromptError(f"unknown prompt key {prompt_key!r}; keys of prompt set {prompt_set!r}: {keys}")
        self.prompt_key = prompt_key  # a named template for every task (e.g. a local BEIR copy of SciFact)
        self.scoring = ScoringConfig(
            max_output_tokens=max_output_tokens,
            context_size=context_size,
            failed_score=failed_score,
            length_rule=length_rule,
            force_rethink=force_rethink,
            answer_rule=answer_rule,
        )
        if scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {', '.join(SCHEDULING)}, got {scheduling!r}")
        self.scheduling = scheduling
        self.keep_token_ids = keep_token_ids
        device = device or "auto"
        # None: float16 on CUDA, float32 on CPU; with device "auto" decided when the device is (at first use)
        self._dtype: str | None = fp_options or (default_dtype(device) if device != "auto" else None)
        self._requested_engine = engine
        self._prompt_file = prompt_file
        self.engine_config = EngineConfig(
            model=self.model_name_or_path,
            revision=revision,
            num_gpus=num_gpus,
            device=device,
            context_size=self.scoring.engine_context_size(),  # one more under answer_rule="reference" (vLLM 0.7.2)
            dtype=self._dtype or "float16",  # placeholder until the device is known; see `dtype`
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=enforce_eager,
            max_num_seqs=max_num_seqs,
            trust_remote_code=trust_remote_code,
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            batch_size=batch_size,
            server_urls=tuple(server_urls),
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            request_timeout=request_timeout,
            max_retries=max_retries,
            stall_warning_s=stall_warning_s,
            data_parallel=data_parallel,
            ngram_speculation=ngram_speculation,
        )
        self.engine_kwargs = dict(engine_kwargs or {})
        self.chunk_size = chunk_size  # scheduling="chunked": None = 1024, or 4 per request slot for servers
        self.shard: tuple[int, int] | None = None  # (i, n): judge only keys of shard i of n (rank1_eval.shards)
        self.store = store
        self.stats = RunStats()
        self.trace_sink: Callable[[dict[str, Any], list[Judgement]], None] | None = None
        # judges the pairs the store lacks instead of the scheduler (rank1_eval.sweep: derived from a longer run)
        self.judge_missing: Callable[[rank1, Sequence[PreparedPrompt], Callable[[int, Judgement], None]], None] | None
        self.judge_missing = None
        self.progress: Progress | None = None
        self.engine_log: Path | None = None  # where the engine's own output goes while it loads (None: as is)
        self._engine: Engine | None = None
        self._scorer: Scorer | None = None
        self._prompt_rule: Rule | None = None  # tokenizer only: prompts without loading the weights
        self._fingerprint: str | None = None
        self._settings_key: str | None = None
        meta = model_meta_for(self.model_name_or_path, revision, loader=load_rank1)
        kwargs = self.experiment_kwargs(resolve=False)
        # mteb's own cache then keeps runs of other settings apart, as for mteb.get_model(name, **kwargs)
        self.mteb_model_meta = meta.model_copy(update={"experiment_kwargs": kwargs}) if kwargs else meta

    # ----------------------------------------------------------------- loading
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._load_engine()
        return self._engine

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer(self.engine, self.scoring)
        return self._scorer

    def _resolved_device(self) -> str:
        if self.engine_config.device != "auto":
            return self.engine_config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def dtype(self) -> str:
        """``fp_options`` in force: as given, else float16 on CUDA and float32 on CPU (resolves the device)."""
        if self._dtype is None:
            from dataclasses import replace

            self._dtype = default_dtype(self._resolved_device())
            self.engine_config = replace(self.engine_config, dtype=self._dtype)
        return self._dtype

    def _load_engine(self) -> Engine:
        from dataclasses import replace

        from rank1_eval.engines.device import DeviceError

        config = replace(self.engine_config, device=self._resolved_device(), dtype=self.dtype)
        started = time.perf_counter()
        try:
            engine = load_engine(self.engine_name, config, **self.engine_kwargs)
        except DeviceError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                _missing_folder(self.model_name_or_path)
                or f"could not load model {self.model_name_or_path!r} with the {self.engine_name} "
                f"engine: {_short_reason(exc)}"
            ) from exc
        log.info("loaded %s on %s in %.1fs", self.model_name_or_path, engine.kind, time.perf_counter() - started)
        return engine

    def with_scoring(self, **changes: Any) -> rank1:
        """This model with other scoring settings (e.g. ``max_output_tokens``), sharing its loaded engine.

        The copy has its own keys, stats and store hooks; closing either closes the shared engine."""
        from dataclasses import replace

        other = copy.copy(self)
        other.scoring = replace(self.scoring, **changes)
        other.stats = RunStats()
        other._scorer = other._prompt_rule = other._settings_key = None
        other.judge_missing = None
        return other

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._engine = None
        self._scorer = None

    # ----------------------------------------------------------------- prompts
    def template_for(self, task: str | None, subset: str | None) -> str | None:
        """The dataset template in force for (task, subset), honouring ``dataset_prompt`` and ``prompt_key``."""
        return self.template_info(task, subset)["template"]

    def template_info(self, task: str | None, subset: str | None) -> dict[str, Any]:
        """Which dataset template (task, subset) gets and why: the record ``summary.json`` keeps."""
        if self.dataset_prompt is False:
            key, source, template = None, "disabled (skip_prompt)", None
        elif isinstance(self.dataset_prompt, str):
            key, source, template = None, "dataset_prompt", self.dataset_prompt
        elif self.prompt_key is not None:
            key, source, template = self.prompt_key, "prompt_key", self.templates[self.prompt_key]
        else:
            key = P.selected_key(self.templates, task, subset)
            template = self.templates[key] if key is not None else None
            source = "task" if template is not None else "none (raw query)"
        return {
            "key": key,
            "source": source,
            "prompt_set": self.prompt_set,
            "template": template,
            "sha256": P.template_sha256(template),
        }

    def final_queries(
        self, queries: Sequence[str], instructions: Sequence[str | None], task: str | None, subset: str | None
    ) -> list[str]:
        template = self.template_for(task, subset)
        return [P.build_query(q, i, template) for q, i in zip(queries, instructions, strict=True)]

    # ----------------------------------------------------------------- judging
    def judgement_key(self, prompt: str) -> str:
        """Store key: the full prompt plus a digest of every setting that determines a judgement."""
        from rank1_eval.store import judgement_key

        if self._settings_key is None:  # settings are fixed after construction: hash them once, not per pair
            self._settings_key = judgement_key(
                model=self.model_name_or_path if not _is_local(self.model_name_or_path) else "local",
                revision=self.revision,
                weights=self._weights_id(),
                sampling=self.scoring.sampling(),
                engine=self.engine_name,
                dtype=self.dtype,
            )
        return judgement_key(settings=self._settings_key, prompt=prompt)

    def _weights_id(self) -> str | None:
        if not _is_local(self.model_name_or_path):
            return None
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model_name_or_path)
        return self._fingerprint

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[PreparedPrompt]:
        """Prompts (with truncation) for final query texts and passage texts; needs only the tokenizer.

        Without a loaded engine only the tokenizer is loaded, so a run whose judgements are all in the store
        (a resumed run, or the final run after ``rank1-eval merge``) needs no GPU, server or weights.
        """
        if self._engine is not None:
            return self.scorer.prepare(queries, passages)
        return self._tokenizer_rule().prepare(queries, passages)

    def _tokenizer_rule(self) -> Rule:
        if self._prompt_rule is None:
            self._prompt_rule = Rule(self._load_tokenizer(), self.scoring)
        return self._prompt_rule

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        cfg = self.engine_config
        try:
            return AutoTokenizer.from_pretrained(
                cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            reason = _short_reason(exc)
            raise ModelLoadError(
                _missing_folder(self.model_name_or_path)
                or f"could not load the tokenizer of {self.model_name_or_path!r}: {reason}"
            ) from exc

    def tokenizer_only(self) -> Any:
        """The model's tokenizer without its weights (the engine's when it is loaded): for pre-flight checks."""
        if self._engine is not None:
            return self._engine.tokenizer
        return self._tokenizer_rule().tokenizer

    def judge_prompts(
        self, prepared: Sequence[PreparedPrompt], progress: Progress | None = None
    ) -> list[Judgement]:
        """Judge prepared prompts: store hits first, exact duplicates once, the rest streamed through the engine.

        Each judgement goes to the store writer the moment it is final (commits batched every
        ``COMMIT_INTERVAL_S``), so a crash loses at most the pairs in flight.
        """
        progress = progress or self.progress or Progress()
        started = time.perf_counter()
        stats = self.stats
        keys = [self.judgement_key(p.prompt) for p in prepared]
        if self.shard is not None:  # a job-array shard: only its share, the same for any run of these pairs
            kept = [i for i, k in enumerate(keys) if in_shard(k, self.shard)]
            prepared, keys = [prepared[i] for i in kept], [keys[i] for i in kept]
        stats.pairs_total += len(prepared)
        self._count_cuts(prepared)
        if self.store is not None:
            progress.status(f"looking up {len(keys)} pairs in the store")
        found: dict[str, Judgement] = dict(self.store.get_many(list(set(keys)))) if self.store else {}
        hits = sum(k in found for k in keys)
        stats.pairs_from_store += hits
        todo: dict[str, PreparedPrompt] = {}
        for key, prep in zip(keys, prepared, strict=True):
            if key not in found and key not in todo:
                todo[key] = prep
        stats.duplicates += sum(k not in found for k in keys) - len(todo)
        load_s = 0.0
        if todo and self._engine is None and self.judge_missing is None:  # judge_missing loads it if it must
            from rank1_eval.logs import native_output

            progress.status(f"loading {self.model_name_or_path} ({self.engine_name} engine)")
            t0 = time.perf_counter()
            with native_output(self.engine_log):  # the engine's own prints go to the log file, not the screen
                self.scorer  # noqa: B018 -- loads the engine now, so its load time is not judging time
            load_s = time.perf_counter() - t0
            stats.load_s += load_s
        progress.engine_ready()
        progress.from_store(hits)
        if todo:
            copies = Counter(k for k in keys if k in todo)
            # Prompts of one query (and instruction) run together so the engine's prefix cache serves their shared
            # opening; longest first within a query so the stragglers start early. Results keep input order.
            items = sorted(todo.items(), key=lambda kv: (_query_part(kv[1].prompt), -kv[1].prompt_tokens))
            writer = None
            if self.store is not None:  # a failed commit (full disk...) interrupts the run at once
                writer = AsyncWriter(self.store, commit_interval=COMMIT_INTERVAL_S, interrupt_main=True)

            def final(i: int, judgement: Judgement) -> None:
                key = items[i][0]
                found[key] = judgement
                stats.add_scored(judgement)
                if writer is not None:
                    writer.submit([(key, judgement)])
                progress.judged(judgement, pairs=copies[key])

            stats.scheduling = self.scheduling
            meter = getattr(self._engine, "meter", None)  # loaded above, unless judge_missing loads it
            if meter is not None:
                meter.reset()
            try:
                t0 = time.perf_counter()
                if self.judge_missing is not None:
                    self.judge_missing(self, [p for _, p in items], final)
                    stats.engine_s += time.perf_counter() - t0
                elif self.scheduling == "stream":
                    scheduler = Scheduler(self.engine, self.scorer.rule, keep_token_ids=self.keep_token_ids,
                                          on_final=final)  # fmt: skip
                    scheduler.run([p for _, p in items])
                    stats.engine_s += scheduler.stats.engine_s
                else:
                    self._judge_chunked(items, final)
                    stats.engine_s += time.perf_counter() - t0
            finally:
                if writer is not None:
                    writer.close()  # flushes, and re-raises any error of the writer thread
            if meter is not None:
                stats.occupancy = meter.summary()
        result = [found[k] for k in keys]
        stats.add_result(result)
        stats.wall_s += time.perf_counter() - started - load_s
        return result

    def _judge_chunked(self, items: Sequence[tuple[str, PreparedPrompt]], final: Callable[[int, Judgement], None]):
        """The synchronous path: each chunk's pass 1 in one engine call, then its forced answers, then the next."""
        size = self.effective_chunk_size()
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            judged = self.scorer.score([p for _, p in chunk], keep_token_ids=self.keep_token_ids)
            for offset, judgement in enumerate(judged):
                final(start + offset, judgement)

    def _count_cuts(self, prepared: Sequence[PreparedPrompt]) -> None:
        """Passages each length rule would cut for these prompts (from their uncut token counts)."""
        if not prepared or any(p.source_tokens is None for p in prepared):
            return
        reserve = self._forced_reserve()
        for rule in LENGTH_RULES:
            budget = rule_budget(rule, self.scoring.context_size, self.scoring.max_output_tokens, reserve)
            self.stats.cut_by_rule[rule] = self.stats.cut_by_rule.get(rule, 0) + sum(
                p.source_tokens > budget for p in prepared  # type: ignore[operator]
            )

    def _forced_reserve(self) -> int:
        if self._engine is not None:
            return self.scorer.rule.forced_reserve
        return self._tokenizer_rule().forced_reserve

    def effective_chunk_size(self) -> int:
        """Pairs per engine call (= per store commit): explicit, or 1024, or 4 per request slot of the servers."""
        if self.chunk_size:
            return max(1, self.chunk_size)
        slots = getattr(self.engine, "slots", None)  # server engines: requests in flight at once
        return max(256, 4 * slots) if slots else 1024

    def judge(self, pairs: Sequence[Any], *, task: str | None = None, subset: str | None = None) -> list[Judgement]:
        """Judgements for seed-style pairs, in input order (empty input -> empty list, no model load)."""
        queries, docs, instructions = _normalise_pairs(pairs)
        if not queries:
            return []
        final = self.final_queries(queries, instructions, task, subset)
        return self.judge_prompts(self.prepare(final, [P.doc_text(d) for d in docs]), progress=self.progress)

    def predict(
        self,
        inputs1: Any,
        inputs2: Any = None,
        *,
        task_metadata: Any = None,
        hf_split: str | None = None,
        hf_subset: str | None = None,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> list[float]:
        """P(true) per pair: seed-style ``predict(pairs)`` or mteb's ``predict(inputs1, inputs2, ...)``."""
        if inputs2 is None:
            return [j.score for j in self.judge(inputs1)]
        return self._predict_mteb(inputs1, inputs2, task_metadata, hf_split, hf_subset)

    def _predict_mteb(self, inputs1: Any, inputs2: Any, task_metadata: Any, split: Any, subset: Any) -> list[float]:
        if self.shard is not None:
            raise RuntimeError("a shard judges only its share of the pairs: use rank1_eval.shards, not mteb/predict")
        q = _loader_columns(inputs1)
        d = _loader_columns(inputs2)
        n = len(q.get("id", q.get("text", [])))
        if n != len(d.get("text", [])):
            raise ValueError(f"mteb handed {n} queries but {len(d.get('text', []))} documents")
        if n == 0:
            return []
        # mteb 2.x: `text` already holds query + instruction; merge the separate columns instead (SPEC §1.1).
        queries = q["query"] if "query" in q else q["text"]
        instructions = q.get("instruction") or [None] * n
        task = getattr(task_metadata, "name", None)
        final = self.final_queries(queries, instructions, task, subset)
        if self.progress is not None:
            self.progress.status(f"preparing {n} prompts (tokenizer)")
        judgements = self.judge_prompts(self.prepare(final, list(d["text"])), progress=self.progress)
        if self.trace_sink is not None:
            context = {"task": task, "subset": subset, "split": split, "qids": q.get("id"), "docids": d.get("id")}
            self.trace_sink(context, judgements)
        return [j.score for j in judgements]

    def batch_policy(self) -> dict[str, Any]:
        """How requests reach the engine: the scheduling policy, its window, and the engine's own batching."""
        policy: dict[str, Any] = {
            "scheduling": self.scheduling,
            "means": SCHEDULING[self.scheduling],
            "dedup": True,
            "commit_interval_s": COMMIT_INTERVAL_S,
            "order": "query-grouped, longest prompt first within a query",
        }
        if self.scheduling == "chunked":
            policy["chunk_size"] = self.chunk_size or (self.effective_chunk_size() if self._engine else "auto")
        elif self._engine is not None:
            policy["window"] = self._engine.window
        policy["engine_batching"] = {"vllm": "continuous (vLLM scheduler)", "openai": "per-server request window",
                                     "transformers": "static batches of batch_size"}.get(self.engine_name)  # fmt: skip
        return policy

    def outcome_settings(self) -> dict[str, Any]:
        """Every model-side setting that determines a judgement (the result folder's hash covers these)."""
        return {
            "model": self.model_name_or_path if not _is_local(self.model_name_or_path) else "local",
            "revision": self.revision,
            "weights_fingerprint": self._weights_id(),
            "engine": self.engine_name,
            "dtype": self.dtype,
            "prompt_set": self.prompt_set,
            "prompt_set_sha256": P.prompt_set_sha256(self.templates),
            "dataset_prompt": self.dataset_prompt,
            "prompt_key": self.prompt_key,
            **self.scoring.sampling(),
            "length_rule": self.scoring.length_rule,
        }

    def experiment_kwargs(self, *, resolve: bool = True) -> dict[str, Any]:
        """The settings that differ from rank1's defaults, as mteb's ``experiment_kwargs``.

        A dtype other than the device's default and an explicitly chosen Transformers engine count too; with
        ``resolve=False`` (construction) an undecided ``device="auto"`` leaves the dtype out.
        """
        values = {
            "context_size": self.scoring.context_size,
            "max_output_tokens": self.scoring.max_output_tokens,
            "dataset_prompt": self.dataset_prompt,
            "prompt_set": self.prompt_set,
            "prompt_key": self.prompt_key,
            "failed_score": self.scoring.failed_score,
            "length_rule": self.scoring.length_rule,
            "force_rethink": self.scoring.force_rethink,
            "answer_rule": self.scoring.answer_rule,
        }
        out = {k: v for k, v in values.items() if v != OUTCOME_DEFAULTS[k]}
        if self._prompt_file is not None:  # the file's path says nothing portable; its content hash does
            out["prompt_file"] = P.prompt_set_sha256(self.templates)[:12]
        device = self.engine_config.device
        if resolve or device != "auto" or self._dtype is not None:
            dtype = self.dtype if resolve else (self._dtype or "")
            known = device if device != "auto" else (self._resolved_device() if resolve else None)
            if known is not None and dtype and dtype != default_dtype(known):
                out["fp_options"] = dtype
        if self._requested_engine == "transformers":
            out["engine"] = "transformers"
        return out

    def resolved_revision(self) -> str | None:
        """The Hub commit the weights come from, when the local Hub cache knows it (no network call)."""
        if _is_local(self.model_name_or_path):
            return None
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(self.model_name_or_path, "config.json", revision=self.revision)
        except Exception:  # noqa: BLE001 -- provenance extra: an odd cache must not fail a run
            return None
        if not isinstance(found, str):
            return None
        parts = Path(found).parts
        return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None

    def provenance(self) -> dict[str, Any]:
        """Model, engine and sampling settings in force (loads nothing that is not loaded yet)."""
        info: dict[str, Any] = {
            "model": self.model_name_or_path,
            "revision": self.revision,
            "weights_fingerprint": self._weights_id(),
            "engine": self.engine_name,
            "dtype": self.dtype,
            "resolved_revision": self.resolved_revision(),
            "num_gpus": self.engine_config.num_gpus,
            "sampling": self.scoring.sampling(),
            "length_rule": self.scoring.length_rule,
            "length_rules": dict(LENGTH_RULES),
            "force_rethink": self.scoring.force_rethink,
            "prompt_set": self.prompt_set,
            "prompt_set_sha256": P.prompt_set_sha256(self.templates),
            "prompt_key": self.prompt_key,
            "dataset_prompt": self.dataset_prompt,
            "batch_policy": self.batch_policy(),
        }
        if self._engine is not None:
            info["engine_info"] = self._engine.info()
        return info


Rank1 = rank1


def pin_revision(model_name: str, revision: str | None) -> Any:
    """Let ``mteb.get_model(model_name, revision=revision)`` load that Hub commit (or branch/tag) of a rank1
    checkpoint; mteb's registry accepts only the revision its entry holds. Returns the new ModelMeta."""
    return _pin_revision(model_name, revision, loader=load_rank1)


def load_rank1(model_name: str, revision: str | None = None, **kwargs: Any) -> rank1:
    """mteb's loader of the registered checkpoints: ``mteb.get_model(name, **kw)`` -> ``rank1(name, ...)``."""
    return rank1(model_name, revision=revision, **kwargs)


def _missing_folder(name: str) -> str | None:
    """A clear line when ``name`` is meant as a local folder that does not exist (not a Hub id error)."""
    if os.path.isdir(name):
        return None
    if os.path.exists(name):
        return f"model path {name!r} is a file, not a model folder (config.json, tokenizer and weights)"
    path = Path(os.path.expanduser(name))
    local = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or path.parent.is_dir() and "/" in name
    if not local:
        return None
    return (
        f"model folder {name!r} does not exist ({path.resolve()}); pass an existing local folder, or a Hub "
        "model id such as jhu-clsp/rank1-7b"
    )


def _short_reason(exc: BaseException) -> str:
    """The first line of an exception chain's most specific message (no stack trace for the user)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
