"""Any mteb reranker through ``rank1-eval run``: a thin adapter that gives a baseline the parts of rank1's
interface the driver uses (store, stats, traces, settings, provenance).

mteb's own loader does the modelling: a registered ``CrossEncoderProtocol`` model via ``mteb.get_model`` (e.g.
``BAAI/bge-reranker-v2-m3``, ``mteb/baseline-random-cross-encoder``), a local sentence-transformers CrossEncoder
folder via mteb's ``CrossEncoderWrapper``. rank1_eval adds what it adds for rank1: the first stage, the store
(resume: each score keyed by the texts the model sees and the model's identity), and the result folder. A
baseline has no reasoning: its ``traces.jsonl`` holds one line per pair with the score and the first-stage
rank, and ``summary.json`` says ``"reasoning_traces": false``.

:func:`is_baseline` is the one place that decides whether ``--model`` names rank1 or a baseline.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rank1_eval import mteb_compat
from rank1_eval.errors import UsageError
from rank1_eval.records import Judgement

__all__ = ["BASELINE_FLAGS", "RANK1_ONLY_FLAGS", "Baseline", "BaselineError", "check_flags", "is_baseline"]

KIND = "mteb-cross-encoder"
CHUNK_PAIRS = 512  # pairs per model call, each chunk stored when scored (a crash loses at most one chunk)
DEFAULT_BATCH_SIZE = 32

# rank1's flags (argparse dest -> flag): given with a baseline they are an error naming the flag, not ignored
RANK1_ONLY_FLAGS: dict[str, str] = {
    "num_gpus": "--num-gpus",
    "engine": "--engine",
    "dtype": "--dtype",
    "context_size": "--context-size",
    "max_output_tokens": "--max-output-tokens",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "enforce_eager": "--enforce-eager",
    "max_num_seqs": "--max-num-seqs",
    "scheduling": "--scheduling",
    "chunk_size": "--chunk-size",
    "length_rule": "--length-rule",
    "ngram_speculation": "--ngram-speculation",
    "force_rethink": "--force-rethink",
    "keep_token_ids": "--keep-token-ids",
    "failed_score": "--failed-score",
    "skip_prompt": "--skip-prompt",
    "prompt_set": "--prompt-set",
    "prompt_file": "--prompt-file",
    "prompt_key": "--prompt-key",
    "data_parallel": "--data-parallel",
    "server_urls": "--server-url",
    "api_key_env": "--api-key-env",
    "max_concurrency": "--max-concurrency",
    "request_timeout": "--request-timeout",
    "max_retries": "--max-retries",
    "stall_warning": "--stall-warning",
    "budgets": "--budgets",
    "verify": "--verify",
    "shard": "--shard",
    "kv_cache_memory_bytes": "--kv-cache-memory-bytes",
    "answer_rule": "--answer-rule",
}
BASELINE_FLAGS: dict[str, str] = {}  # baseline-only flags (an error with rank1); --batch-size serves both


class BaselineError(UsageError):
    """A baseline that cannot run as asked (not a cross-encoder, a rank1-only flag): one line with the fix."""


def _local_cross_encoder(path: str) -> bool:
    """A local folder holding a sequence-classification model (what sentence-transformers' CrossEncoder loads)."""
    folder = Path(path)
    config = folder / "config.json"
    if not folder.is_dir() or not config.is_file():
        return False
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        try:
            if json.loads(st_config.read_text(encoding="utf-8")).get("model_type") == "CrossEncoder":
                return True
        except (OSError, ValueError):
            pass  # an unreadable extra file: the transformers config below decides
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def is_baseline(model: str | None) -> bool:
    """Whether ``--model`` names a baseline: a local CrossEncoder folder, or a model mteb registers as a
    cross-encoder that is not a rank1 checkpoint. Anything else (rank1 ids, local rank1 folders) is rank1."""
    if not model:
        return False
    if os.path.isdir(model):
        return _local_cross_encoder(model)
    from rank1_eval.registry import all_checkpoints

    if model in all_checkpoints() or model.startswith("jhu-clsp/rank1"):
        return False
    meta = mteb_compat.registered_meta(model)
    return meta is not None and mteb_compat.is_cross_encoder(meta)


def check_flags(args: Any, defaults: Mapping[str, Any], *, baseline: bool) -> None:
    """rank1-only flags with a baseline, or baseline-only flags with rank1: an error naming the flag."""
    wrong = RANK1_ONLY_FLAGS if baseline else BASELINE_FLAGS
    given = [flag for dest, flag in wrong.items() if getattr(args, dest, None) != defaults.get(dest)]
    if not given:
        return
    if baseline:
        raise UsageError(
            f"{', '.join(given)} {'is a rank1 flag' if len(given) == 1 else 'are rank1 flags'}: {args.model} is an "
            "mteb reranker (a baseline), which mteb's own loader runs; drop "
            f"{'it' if len(given) == 1 else 'them'}"
        )
    who = args.model or "the demo micro rank1"
    raise UsageError(f"{', '.join(given)} applies to baselines (mteb rerankers) only, not to rank1 ({who})")


class Baseline:
    """An mteb cross-encoder as the driver sees rank1: ``predict`` through the store, traces, settings."""

    kind = KIND
    engine_name = "mteb"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        device: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        trust_remote_code: bool = False,
        loader: Callable[[], Any] | None = None,
    ) -> None:
        from rank1_eval.model import RunStats

        self.model_name_or_path = model
        self.local = os.path.isdir(model)
        self.device = device
        self.batch_size = batch_size
        self.trust_remote_code = trust_remote_code
        if self.local:
            if not _local_cross_encoder(model):
                raise BaselineError(f"{model} is not a CrossEncoder folder (a *ForSequenceClassification config.json)")
            meta = mteb_compat.local_cross_encoder_meta(f"local/{os.path.basename(os.path.normpath(model))}", revision)
        else:
            meta = mteb_compat.registered_meta(model)
            if meta is None or not mteb_compat.is_cross_encoder(meta):
                raise BaselineError(f"{model} is not a cross-encoder in mteb's registry")
            if revision is not None and revision != meta.revision:
                meta = meta.model_copy(update={"revision": revision})
        self.revision = meta.revision
        self.mteb_model_meta = meta
        self._loader = loader
        self._inner: Any = None
        self._fingerprint: str | None = None
        self._settings_key: str | None = None
        self.load_s = 0.0
        # set by the driver for one run (the same attributes as rank1's)
        self.store: Any = None
        self.stats = RunStats()
        self.progress: Any = None
        self.engine_log: Path | None = None
        self.trace_sink: Callable[[dict[str, Any], list[Judgement]], None] | None = None

    # ----------------------------------------------------------------- identity
    def _weights_id(self) -> str | None:
        if not self.local:
            return None
        if self._fingerprint is None:
            from rank1_eval.model import weights_fingerprint

            self._fingerprint = weights_fingerprint(self.model_name_or_path)
        return self._fingerprint

    def identity(self) -> dict[str, Any]:
        """What decides a score besides the texts: the model (mteb name + revision, or local weights) and how
        mteb wraps it (the registry's loader kwargs: prefixes, pooling)."""
        meta = self.mteb_model_meta
        return {
            "kind": KIND,
            "model": self.mteb_model_meta.name if not self.local else "local",
            "revision": self.revision,
            "weights_fingerprint": self._weights_id(),
            "loader_kwargs": None if self.local else json.loads(json.dumps(meta.loader_kwargs or {}, default=str)),
        }

    def judgement_key(self, query: str, doc: str) -> str:
        from rank1_eval.store import judgement_key

        if self._settings_key is None:
            self._settings_key = judgement_key(**self.identity())
        return judgement_key(settings=self._settings_key, query=query, doc=doc)

    def outcome_settings(self) -> dict[str, Any]:
        """Every model-side setting that decides a score (the result folder's hash covers these)."""
        return {**self.identity(), "engine": self.engine_name}

    def experiment_kwargs(self, *, resolve: bool = True) -> dict[str, Any]:
        return {}  # mteb files a baseline under its own name and revision, as mteb itself would

    def provenance(self) -> dict[str, Any]:
        inner = self._inner
        return {
            "model": self.model_name_or_path,
            "model_kind": KIND,
            "mteb_name": self.mteb_model_meta.name,
            "revision": self.revision,
            "weights_fingerprint": self._weights_id(),
            "engine": self.engine_name,
            "mteb_wrapper": None if inner is None else f"{type(inner).__module__}.{type(inner).__qualname__}",
            "device": self.device,
            "batch_size": self.batch_size,
            "reasoning_traces": False,
        }

    def template_info(self, task: str | None, subset: str | None) -> dict[str, Any]:
        return {
            "key": None,
            "source": "none: the baseline sees mteb's query text (instruction included)",
            "prompt_set": None,
            "template": None,
            "sha256": None,
        }

    @contextlib.contextmanager
    def session(
        self,
        *,
        store: Any = None,
        progress: Any = None,
        engine_log: Path | None = None,
        traces: Callable[[dict[str, Any], list[Judgement]], None] | None = None,
        missing: Any = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[Any]:
        """A run's context, as rank1's: its store, display, engine log and trace sink; yields fresh stats.
        Budget sweeps (``missing``) and shards are rank1's: refused."""
        from rank1_eval.model import RunStats

        if missing is not None or shard is not None:
            raise BaselineError("budget sweeps and shards are for rank1 runs, not for a baseline reranker")
        saved = (self.store, self.progress, self.engine_log, self.trace_sink)
        self.store, self.stats, self.progress, self.engine_log = store, RunStats(), progress, engine_log
        self.trace_sink = traces
        try:
            yield self.stats
        finally:
            self.store, self.progress, self.engine_log, self.trace_sink = saved

    # ----------------------------------------------------------------- scoring
    def inner(self) -> Any:
        """The mteb model, loaded at the first pair the store lacks."""
        if self._inner is None:
            started = time.perf_counter()
            if self._loader is not None:
                self._inner = self._loader()
            elif self.local:
                kwargs = {"trust_remote_code": True} if self.trust_remote_code else {}
                self._inner = mteb_compat.cross_encoder_wrapper(self.model_name_or_path, device=self.device, **kwargs)
            else:
                self._inner = mteb_compat.get_model(self.model_name_or_path, revision=self.revision, device=self.device)
            self.load_s = time.perf_counter() - started
            self.stats.load_s += self.load_s
        return self._inner

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
        """Scores of mteb's (query, document) loaders: the store's, then the model's for the rest (in chunks,
        each stored when scored), in input order."""
        from rank1_eval.progress import Progress

        progress = self.progress or Progress()
        started = time.perf_counter()
        q = mteb_compat.loader_columns(inputs1)
        d = mteb_compat.loader_columns(inputs2)
        queries, docs = list(q.get("text", [])), list(d.get("text", []))
        if len(queries) != len(docs):
            raise ValueError(f"mteb handed {len(queries)} queries but {len(docs)} documents")
        keys = [self.judgement_key(str(a), str(b)) for a, b in zip(queries, docs, strict=True)]
        stats = self.stats
        stats.pairs_total += len(keys)
        found: dict[str, Judgement] = dict(self.store.get_many(list(set(keys)))) if self.store is not None else {}
        hits = sum(k in found for k in keys)
        stats.pairs_from_store += hits
        todo: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in found and key not in todo:
                todo[key] = i
        stats.duplicates += sum(k not in found for k in keys) - len(todo)
        if todo:
            progress.status(f"loading {self.model_name_or_path} (mteb)")
            model = self.inner()
        progress.engine_ready()
        progress.from_store(hits)
        copies = Counter(k for k in keys if k in todo)
        items = list(todo.items())
        call_kwargs = {**kwargs, "batch_size": self.batch_size, "show_progress_bar": False}
        for start in range(0, len(items), CHUNK_PAIRS):
            chunk = items[start : start + CHUNK_PAIRS]
            rows = [i for _, i in chunk]
            t0 = time.perf_counter()
            scores = model.predict(
                mteb_compat.select_rows(inputs1, rows, self.batch_size),
                mteb_compat.select_rows(inputs2, rows, self.batch_size),
                task_metadata=task_metadata,
                hf_split=hf_split,
                hf_subset=hf_subset,
                prompt_type=prompt_type,
                **call_kwargs,
            )
            stats.engine_s += time.perf_counter() - t0
            scores = [float(s) for s in scores]
            if len(scores) != len(chunk):
                raise RuntimeError(f"{self.model_name_or_path} returned {len(scores)} scores for {len(chunk)} pairs")
            new = []
            for (key, i), score in zip(chunk, scores, strict=True):
                if not math.isfinite(score):
                    qid, docid = q.get("id", ["?"] * len(keys))[i], d.get("id", ["?"] * len(keys))[i]
                    raise RuntimeError(f"{self.model_name_or_path} gave a non-finite score ({score}) to {qid}/{docid}")
                judgement = Judgement(
                    score=score, reasoning="", path="pass1", prompt_tokens=0, output_tokens=0, finish_reason="score"
                )
                found[key] = judgement
                new.append((key, judgement))
                stats.add_scored(judgement)
                progress.judged(judgement, pairs=copies[key], generated_tokens=0)
            if self.store is not None:  # each chunk durable as soon as it is scored
                self.store.put_many(new)
        result = [found[k] for k in keys]
        stats.add_result(result)
        stats.wall_s += time.perf_counter() - started - (self.load_s if todo else 0.0)
        if self.trace_sink is not None:
            task = getattr(task_metadata, "name", None)
            context = {"task": task, "subset": hf_subset, "split": hf_split, "qids": q.get("id"), "docids": d.get("id")}
            self.trace_sink(context, result)
        return [j.score for j in result]

    def close(self) -> None:
        self._inner = None


def from_args(args: Any) -> Baseline:
    """The baseline ``rank1-eval run --model`` names (flags already checked by :func:`check_flags`)."""
    return Baseline(
        args.model,
        revision=args.revision,
        device=args.device,
        batch_size=getattr(args, "batch_size", None) or DEFAULT_BATCH_SIZE,  # --batch-size: pairs per forward pass
        trust_remote_code=bool(args.trust_remote_code),
    )
