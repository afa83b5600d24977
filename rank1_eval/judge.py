"""The judge: engine + rule + store + scheduler, behind a small public API.

A :class:`Judge` is built from :class:`~rank1_eval.settings.Settings`. It keys every prepared prompt by the
exact pass-1 request it makes of the engine plus the rule version, the model's identity and the numerics
(:meth:`Judge.key`), answers what the store holds, and streams the rest through the engine. ``rank1`` (the
public class, mteb's CrossEncoderProtocol) is a thin adapter over it; ``evaluate`` and ``sweep`` use only the
methods here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rank1_eval.engines import ENGINES as ENGINE_NAMES
from rank1_eval.engines import EngineConfig, load_engine, resolve_engine_name
from rank1_eval.progress import Progress
from rank1_eval.records import Judgement
from rank1_eval.scheduler import Scheduler
from rank1_eval.scoring import RULE_VERSION, PreparedPrompt, Rule, Scorer, ScoringConfig, ScoringError
from rank1_eval.settings import ENGINE_INTERNAL, ENGINE_RENAMES, Settings, default, key_values
from rank1_eval.store import AsyncWriter, judgement_key

if TYPE_CHECKING:
    from rank1_eval.engines.base import Engine
    from rank1_eval.store import Store

log = logging.getLogger(__name__)

SCHEDULING = {
    "stream": "requests stream into the engine, a pair's forced answer right after its pass 1, each judgement "
    "stored when final",
    "chunked": "synchronous chunks of chunk_size pairs: a chunk's pass 1, then its forced answers, then the next",
}
COMMIT_INTERVAL_S = 0.5  # judgements become durable in the store at most this long after they are final
_COMMIT = re.compile(r"[0-9a-f]{40}")

# judges the pairs the store lacks instead of the scheduler (rank1_eval.sweep: derived from a longer run)
Missing = Callable[["Judge", Sequence[PreparedPrompt], Callable[[int, Judgement], None]], None]


class ModelLoadError(RuntimeError):
    """The model could not be had (not downloadable offline, missing files, bad path)."""


class ModelIdentityError(ModelLoadError):
    """The model's identity (a Hub commit) cannot be known, so its judgements cannot be keyed."""


def default_dtype(device: str) -> str:
    """``fp_options`` when none is given: float16 on CUDA (the paper's), float32 on CPU (no fast float16 there)."""
    return "float16" if device.startswith("cuda") else "float32"


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
    derived_from_store: int = 0  # store hits that a budget sweep derived (not decoded at their budget)
    duplicates: int = 0
    # the result: every pair's judgement
    pass1: int = 0
    pass2: int = 0
    failed: int = 0
    truncated: int = 0
    reasoning_cut: int = 0
    derived: int = 0
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
            self.derived += j.derived_from is not None
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
            "derived": self.derived,
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
            "derived_from_store": self.derived_from_store,
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


def is_local(path: str) -> bool:
    return os.path.isdir(path)


def weights_fingerprint(path: str) -> str:
    """A cheap identity of a local model folder: names, sizes and the head/tail bytes of every file.

    Files up to 2 MiB are read whole; of larger ones the first and last MiB (an edit in the middle of a large
    weight file that keeps its size goes unseen: cheap enough to run at every start)."""
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


def hub_commit(name: str, revision: str | None) -> str:
    """The Hub commit ``name@revision`` resolves to: a 40-hex revision as is, else the local Hub cache's
    snapshot (no network), else, when online, the Hub's answer. Raises :class:`ModelIdentityError`."""
    if revision is not None and _COMMIT.fullmatch(revision):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception as exc:  # noqa: BLE001 -- a malformed id or cache: said in the one line below
        found, why = None, f" ({exc})"
    else:
        why = ""
    if isinstance(found, str):
        parts = Path(found).parts
        if "snapshots" in parts:
            return parts[parts.index("snapshots") + 1]
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes", "on"):
        try:
            from huggingface_hub import model_info

            sha = model_info(name, revision=revision).sha
            if sha:
                return sha
        except Exception as exc:  # noqa: BLE001 -- said in the one line below
            why = f" ({type(exc).__name__})"
    at = f"@{revision}" if revision else ""
    raise ModelIdentityError(
        f"cannot identify model {name}{at}: its commit is not in the local Hub cache and the Hub cannot be asked"
        f"{why}; download it once (huggingface-cli download {name}) or pass --revision <40-hex commit>, so its "
        "judgements are keyed by the weights they come from"
    )


def _quantization(model: str, revision: str | None) -> Any:
    """config.json's ``quantization_config`` (None when absent or when config.json cannot be found locally)."""
    path: str | None = os.path.join(model, "config.json") if is_local(model) else None
    if path is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model, "config.json", revision=revision)
            path = found if isinstance(found, str) else None
        except Exception:  # noqa: BLE001 -- no local config: nothing to read, the commit already identifies it
            path = None
    if path is None or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get("quantization_config")


def server_identity(urls: Sequence[str], api_key_env: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """What each server says it runs (``/v1/models`` root and max_model_len, ``/version``): the numerics of the
    openai engine. Raises :class:`ModelLoadError` with one line when a server does not answer."""
    import urllib.request

    from rank1_eval.engines.openai_engine import api_key_from_env

    key = api_key_from_env(api_key_env)  # an unset --api-key-env variable is an error before any request
    out = []
    for url in sorted(set(urls)):
        base = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            mreq = urllib.request.Request(base + "/models", headers=headers)
            with urllib.request.urlopen(mreq, timeout=timeout) as r:
                entry = (json.load(r).get("data") or [{}])[0]
            try:
                vreq = urllib.request.Request(base.removesuffix("/v1") + "/version", headers=headers)
                with urllib.request.urlopen(vreq, timeout=timeout) as r:
                    version = json.load(r).get("version")
            except (OSError, ValueError):
                version = None
        except OSError as exc:  # the engine's own check says the same when it loads
            raise ModelLoadError(
                f"server {url} is unreachable ({type(exc).__name__}: {exc}); is the vLLM server running there?"
            ) from exc
        except ValueError as exc:
            raise ModelLoadError(f"server {url} did not say what it runs (/models is not JSON: {exc})") from exc
        out.append(
            {
                "root": entry.get("root") or entry.get("id"),
                "max_model_len": entry.get("max_model_len"),
                "version": version,
            }
        )
    # the same model on every server, or the pairs would be keyed by a mix
    return [dict(t) for t in {json.dumps(o, sort_keys=True): o for o in out}.values()]


# Stores keyed by the previous scheme hold judgements of RULE_VERSION 2. Which of them are still what today's rule
# decodes, by RULE_VERSION: under 3 (greedy on every engine) those of the in-process vLLM engine (it never applied
# the checkpoint's generation_config: tests/test_greedy.py), not those of the Transformers engine or of servers.
LEGACY_RULE_VERSION = 2
LEGACY_REUSABLE_ENGINES: dict[int, frozenset[str]] = {2: frozenset(ENGINE_NAMES), 3: frozenset({"vllm"})}


def legacy_key(judge: Judge, prompt: str) -> str:
    """The key key scheme 1 (rank1_eval before RULE_VERSION) gave ``prompt`` under ``judge``'s settings: a digest
    of a settings list (model id, user-given revision, local fingerprint, sampling with context size and
    failed score, engine, dtype) and the prompt. Frozen here for ``rank1-eval store migrate``; never used to judge."""
    from rank1_eval.scoring import STOP_STRINGS

    s, cfg = judge.settings, judge.scoring
    sampling = {
        "temperature": 0.0,
        "max_output_tokens": cfg.max_output_tokens,
        "context_size": cfg.context_size,
        "top_logprobs": cfg.top_logprobs,
        "stop": list(STOP_STRINGS),
        "skip_special_tokens": False,
        "failed_score": cfg.failed_score,
        **({"force_rethink": cfg.force_rethink} if cfg.force_rethink else {}),
    }
    settings = judgement_key(
        model=s.model_name_or_path if not is_local(s.model_name_or_path) else "local",
        revision=s.revision,
        weights=judge.weights_id(),
        sampling=sampling,
        engine=judge.engine_name,
        dtype=judge.dtype,
    )
    return judgement_key(settings=settings, prompt=prompt)


class _EngineSlot:
    """One loaded engine shared by a judge and its :meth:`Judge.with_scoring` variants."""

    def __init__(self) -> None:
        self.engine: Engine | None = None


class Judge:
    """Engine + rule + store + scheduler for one model and its settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine_kwargs: dict[str, Any] | None = None,
        _slot: _EngineSlot | None = None,
    ) -> None:
        self.settings = settings
        self.scoring: ScoringConfig = settings.scoring()
        # unknown names, and URLs or data parallelism an engine would ignore, fail here, before any loading
        self.engine_name = resolve_engine_name(
            settings.engine, server_urls=settings.server_urls, data_parallel=settings.data_parallel
        )
        if settings.scheduling not in SCHEDULING:
            raise ValueError(f"scheduling must be one of {', '.join(SCHEDULING)}, got {settings.scheduling!r}")
        device = settings.device or "auto"
        # None: float16 on CUDA, float32 on CPU; with device "auto" decided when the device is (at first use)
        self._dtype: str | None = settings.fp_options or (default_dtype(device) if device != "auto" else None)
        passed = {
            f: getattr(settings, ENGINE_RENAMES.get(f, f))
            for f in EngineConfig.__dataclass_fields__
            if f not in ENGINE_INTERNAL
        }
        passed.update(device=device, dtype=self._dtype or "float16")  # placeholder until the device is known
        passed["context_size"] = self.scoring.engine_context_size()  # +1 under answer_rule="reference" (vLLM 0.7.2)
        self.engine_config = EngineConfig(**passed)
        self.engine_kwargs = dict(engine_kwargs or {})
        self._slot = _slot or _EngineSlot()
        self._scorer: Scorer | None = None
        self._prompt_rule: Rule | None = None  # tokenizer only: prompts without loading the weights
        self._fingerprint: str | None = None
        self._identity: dict[str, Any] | None = None
        self._identity_digest: str | None = None

    # ----------------------------------------------------------------- engine
    @property
    def loaded(self) -> bool:
        return self._slot.engine is not None

    @property
    def engine(self) -> Engine:
        """The engine, loaded now if it is not yet."""
        if self._slot.engine is None:
            self._slot.engine = self._load_engine()
        return self._slot.engine

    def loaded_engine(self) -> Engine | None:
        return self._slot.engine

    def use_engine(self, engine: Engine | None) -> None:
        """Judge with this already loaded engine (tests, a session's shared engine); None forgets it."""
        self._slot.engine = engine
        self._scorer = None

    def resolved_device(self) -> str:
        if self.engine_config.device != "auto":
            return self.engine_config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def dtype(self) -> str:
        """``fp_options`` in force: as given, else float16 on CUDA and float32 on CPU (resolves the device)."""
        if self._dtype is None:
            self._dtype = default_dtype(self.resolved_device())
            self.engine_config = replace(self.engine_config, dtype=self._dtype)
        return self._dtype

    def _load_engine(self) -> Engine:
        from rank1_eval.engines.device import DeviceError

        config = replace(self.engine_config, device=self.resolved_device(), dtype=self.dtype)
        name = self.settings.model_name_or_path
        started = time.perf_counter()
        try:
            engine = load_engine(self.engine_name, config, **self.engine_kwargs)
        except DeviceError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                missing_folder(name)
                or f"could not load model {name!r} with the {self.engine_name} engine: {short_reason(exc)}"
            ) from exc
        log.info("loaded %s on %s in %.1fs", name, engine.kind, time.perf_counter() - started)
        return engine

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None or self._scorer.engine is not self.engine:
            self._scorer = Scorer(self.engine, self.scoring)
        return self._scorer

    @property
    def rule(self) -> Rule:
        """The rule bound to the tokenizer: the engine's when it is loaded, else the tokenizer alone (no weights)."""
        if self.loaded:
            return self.scorer.rule
        if self._prompt_rule is None:
            self._prompt_rule = Rule(self.load_tokenizer(), self.scoring)
        return self._prompt_rule

    def load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        cfg = self.engine_config
        name = self.settings.model_name_or_path
        try:
            return AutoTokenizer.from_pretrained(
                cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                missing_folder(name) or f"could not load the tokenizer of {name!r}: {short_reason(exc)}"
            ) from exc

    def with_scoring(self, **changes: Any) -> Judge:
        """This judge with other rule settings (e.g. ``max_output_tokens``), sharing its engine."""
        other = Judge(self.settings.replace(**changes), engine_kwargs=self.engine_kwargs, _slot=self._slot)
        other._dtype, other._fingerprint = self._dtype, self._fingerprint
        other.engine_config = self.engine_config
        return other

    def close(self) -> None:
        if self._slot.engine is not None:
            self._slot.engine.close()
        self._slot.engine = None
        self._scorer = None

    # ----------------------------------------------------------------- identity and keys
    def weights_id(self) -> str | None:
        """The fingerprint of a local model folder (None for a Hub id)."""
        if not is_local(self.settings.model_name_or_path):
            return None
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.settings.model_name_or_path)
        return self._fingerprint

    def model_identity(self) -> dict[str, Any]:
        """The weights judgements come from: a local folder's fingerprint, or the Hub id and resolved commit."""
        s = self.settings
        if is_local(s.model_name_or_path):
            return {"local_weights": self.weights_id()}
        return {"hub": s.model_name_or_path, "commit": hub_commit(s.model_name_or_path, s.revision)}

    def numerics(self) -> dict[str, Any]:
        """What changes outputs besides the weights and the request: engine, dtype, quantization, tensor parallel
        size, device; for servers what they report (data-parallel replicas change nothing)."""
        s = self.settings
        if self.engine_name == "openai":
            return {"engine": "openai", "servers": server_identity(s.server_urls, s.api_key_env)}
        return {
            "engine": self.engine_name,
            "dtype": self.dtype,
            "device": self.resolved_device().split(":")[0],
            "quantization": _quantization(s.model_name_or_path, s.revision),
            "tensor_parallel": s.num_gpus,
        }

    def identity(self) -> dict[str, Any]:
        """The part of every key that does not depend on the pair (computed once)."""
        if self._identity is None:
            self._identity = {
                "rule_version": RULE_VERSION,
                "model": self.model_identity(),
                "numerics": self.numerics(),
                # rule settings off their defaults only: a new rule option (default off) keeps every key
                "rule": {n: getattr(self.settings, n) for n in key_values() if getattr(self.settings, n) != default(n)},
            }
        return self._identity

    def key(self, prepared: PreparedPrompt) -> str:
        """Store key: the exact pass-1 request (prompt, budget, stops, top-k, pass 2's context when it binds)
        plus :meth:`identity`."""
        if self._identity_digest is None:
            self._identity_digest = judgement_key(**self.identity())
        return judgement_key(identity=self._identity_digest, request=self.rule.request_identity(prepared))

    def keys(self, prepared: Sequence[PreparedPrompt]) -> list[str]:
        return [self.key(p) for p in prepared]

    # ----------------------------------------------------------------- judging
    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[PreparedPrompt]:
        """Prompts (with truncation) for final query texts and passage texts; needs only the tokenizer."""
        return self.rule.prepare(queries, passages)

    def read(self, judgement: Judgement) -> Judgement:
        """A stored judgement as this run reads it: a failure takes the run's ``failed_score`` (or raises)."""
        if judgement.path != "failed":
            return judgement
        failed = self.scoring.failed_score
        if failed == "raise":
            raise ScoringError(f"a stored pair failed and failed_score='raise' stops the run: {judgement.error}")
        return judgement if judgement.score == float(failed) else replace(judgement, score=float(failed))

    def judge(
        self,
        prepared: Sequence[PreparedPrompt],
        *,
        store: Store | None = None,
        stats: RunStats | None = None,
        progress: Progress | None = None,
        shard: tuple[int, int] | None = None,
        missing: Missing | None = None,
        engine_log: Path | None = None,
    ) -> list[Judgement]:
        """Judge prepared prompts: store hits first, exact duplicates once, the rest streamed through the engine
        (or handed to ``missing``). Each judgement goes to the store writer the moment it is final (commits
        batched every ``COMMIT_INTERVAL_S``), so a crash loses at most the pairs in flight.

        ``shard``: judge only the keys of shard ``(i, n)``; the result then holds only those pairs."""
        progress = progress or Progress()
        stats = stats if stats is not None else RunStats()
        started = time.perf_counter()
        keys = self.keys(prepared)
        if shard is not None:  # a job-array shard: only its share, the same for any run of these pairs
            kept = [i for i, k in enumerate(keys) if in_shard(k, shard)]
            prepared, keys = [prepared[i] for i in kept], [keys[i] for i in kept]
        stats.pairs_total += len(prepared)
        self.count_cuts(prepared, stats)
        if store is not None:
            progress.status(f"looking up {len(keys)} pairs in the store")
        found = {k: self.read(j) for k, j in store.get_many(list(set(keys))).items()} if store is not None else {}
        if self.settings.keep_token_ids and missing is None:  # a run asked for ids (a sweep cuts them): re-decode
            # stored judgements without them (a sweep's own budgets reuse what is stored, ids or not)
            found = {k: j for k, j in found.items() if j.token_ids is not None or j.path == "failed" or j.rounds}
        hits = sum(k in found for k in keys)
        stats.pairs_from_store += hits
        derived = sum(found[k].derived_from is not None for k in keys if k in found)
        stats.derived_from_store += derived
        if derived and missing is None:
            log.warning(
                "%d of %d store hits were derived by a budget sweep (rank1-eval sweep), not decoded at this budget",
                derived,
                hits,
            )
        todo: dict[str, PreparedPrompt] = {}
        for key, prep in zip(keys, prepared, strict=True):
            if key not in found and key not in todo:
                todo[key] = prep
        stats.duplicates += sum(k not in found for k in keys) - len(todo)
        load_s = 0.0
        if todo and not self.loaded and missing is None:  # ``missing`` loads the engine if it must
            from rank1_eval.logs import api_engine_log, native_output

            progress.status(f"loading {self.settings.model_name_or_path} ({self.engine_name} engine)")
            t0 = time.perf_counter()
            with native_output(engine_log or api_engine_log()):  # the engine's prints: a log file, not the screen
                self.engine  # noqa: B018 -- loads the engine now, so its load time is not judging time
            load_s = time.perf_counter() - t0
            stats.load_s += load_s
        progress.engine_ready()
        progress.from_store(hits)
        if todo:
            self._judge_missing(todo, keys, found, stats, progress, store, missing)
        result = [found[k] for k in keys]
        stats.add_result(result)
        stats.wall_s += time.perf_counter() - started - load_s
        return result

    def _judge_missing(
        self,
        todo: dict[str, PreparedPrompt],
        keys: list[str],
        found: dict[str, Judgement],
        stats: RunStats,
        progress: Progress,
        store: Store | None,
        missing: Missing | None,
    ) -> None:
        copies = Counter(k for k in keys if k in todo)
        # Prompts of one query (and instruction) run together so the engine's prefix cache serves their shared
        # opening; longest first within a query so the stragglers start early. Results keep input order.
        items = sorted(todo.items(), key=lambda kv: (_query_part(kv[1].prompt), -kv[1].prompt_tokens))
        writer = None
        if store is not None:  # a failed commit (full disk...) interrupts the run at once
            writer = AsyncWriter(store, commit_interval=COMMIT_INTERVAL_S, interrupt_main=True)

        def final(i: int, judgement: Judgement) -> None:
            key = items[i][0]
            found[key] = judgement
            stats.add_scored(judgement)
            if writer is not None:
                writer.submit([(key, judgement)])
            progress.judged(judgement, pairs=copies[key])

        stats.scheduling = self.settings.scheduling
        meter = getattr(self._slot.engine, "meter", None)  # loaded above, unless ``missing`` loads it
        if meter is not None:
            meter.reset()
        try:
            t0 = time.perf_counter()
            if missing is not None:
                missing(self, [p for _, p in items], final)
                stats.engine_s += time.perf_counter() - t0
            elif self.settings.scheduling == "stream":
                scheduler = Scheduler(
                    self.engine, self.scorer.rule, keep_token_ids=self.settings.keep_token_ids, on_final=final
                )
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

    def _judge_chunked(self, items: Sequence[tuple[str, PreparedPrompt]], final: Callable[[int, Judgement], None]):
        """The synchronous path: each chunk's pass 1 in one engine call, then its forced answers, then the next."""
        size = self.effective_chunk_size()
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            judged = self.scorer.score([p for _, p in chunk], keep_token_ids=self.settings.keep_token_ids)
            for offset, judgement in enumerate(judged):
                final(start + offset, judgement)

    def count_cuts(self, prepared: Sequence[PreparedPrompt], stats: RunStats) -> None:
        """Passages each length rule would cut for these prompts (from their uncut token counts)."""
        from rank1_eval.scoring import LENGTH_RULES, rule_budget

        if not prepared or any(p.source_tokens is None for p in prepared):
            return
        reserve = self.rule.forced_reserve
        for name in LENGTH_RULES:
            budget = rule_budget(name, self.scoring.context_size, self.scoring.max_output_tokens, reserve)
            stats.cut_by_rule[name] = stats.cut_by_rule.get(name, 0) + sum(
                p.source_tokens > budget
                for p in prepared  # type: ignore[operator]
            )

    def effective_chunk_size(self) -> int:
        """Pairs per engine call (= per store commit): explicit, or 1024, or 4 per request slot of the servers."""
        if self.settings.chunk_size:
            return max(1, self.settings.chunk_size)
        slots = getattr(self.engine, "slots", None)  # server engines: requests in flight at once
        return max(256, 4 * slots) if slots else 1024


def missing_folder(name: str) -> str | None:
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


def short_reason(exc: BaseException) -> str:
    """The first line of an exception chain's most specific message (no stack trace for the user)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
