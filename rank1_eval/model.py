"""The public ``rank1`` class: seed-compatible constructor, ``predict``/``judge``, mteb's CrossEncoderProtocol.

A thin adapter over :class:`rank1_eval.judge.Judge` (engine + rule + store + scheduler): this class holds the
prompts (dataset templates, instruction merging) and mteb's protocol; every setting is a field of
:class:`rank1_eval.settings.Settings`. Construction is cheap and offline: settings are validated, weights load at
the first ``predict``/``judge`` whose pairs the store does not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rank1_eval import mteb_compat
from rank1_eval import prompts as P
from rank1_eval.judge import (  # noqa: F401 -- re-exported: the former home of these names
    COMMIT_INTERVAL_S,
    SCHEDULING,
    Judge,
    Missing,
    ModelIdentityError,
    ModelLoadError,
    RunStats,
    default_dtype,
    in_shard,
    is_local,
    missing_folder,
    short_reason,
    weights_fingerprint,
)
from rank1_eval.records import Judgement
from rank1_eval.registry import model_meta_for
from rank1_eval.registry import pin_revision as _pin_revision
from rank1_eval.scoring import LENGTH_RULES, RULE_VERSION, PreparedPrompt, Rule, Scorer, ScoringConfig
from rank1_eval.settings import DEFAULT_MODEL, Settings, default, with_role

if TYPE_CHECKING:
    from rank1_eval.engines.base import Engine
    from rank1_eval.progress import Progress
    from rank1_eval.store import Store

# Settings whose non-default values are mteb "experiment" kwargs (``ModelMeta.experiment_kwargs``), with their
# defaults; fp_options, engine and prompt_file are judged against the device default, "transformers" and the
# file's hash in :meth:`rank1.experiment_kwargs`.
_SPECIAL_EXPERIMENT = ("fp_options", "engine", "prompt_file")
OUTCOME_DEFAULTS: dict[str, Any] = {n: default(n) for n in with_role(experiment=True) if n not in _SPECIAL_EXPERIMENT}
TraceSink = Callable[[dict[str, Any], list[Judgement]], None]


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


class rank1:  # noqa: N801 -- the seed's public name; ``Rank1`` is the PEP 8 alias
    """rank1 reasoning reranker: P(true) after a ``<think>`` reasoning chain, with every trace kept.

    The positional parameters are the seed's; every other setting is a keyword argument named as a field of
    :class:`rank1_eval.settings.Settings` (an unknown name is a ``TypeError``). ``store``: a judgement store;
    ``engine_kwargs``: extra arguments of the engine class; ``model_name``: mteb's alias of the model.
    """

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
        store: Store | None = None,
        engine_kwargs: Mapping[str, Any] | None = None,
        model_name: str | None = None,
        **settings: Any,
    ) -> None:
        # mteb's loader passes the registry name positionally and `revision=` by keyword.
        seed = dict(
            model_name_or_path=model_name or model_name_or_path,
            num_gpus=num_gpus,
            device=device,
            context_size=context_size,
            max_output_tokens=max_output_tokens,
            fp_options=fp_options,
            engine=engine,
            dataset_prompt=dataset_prompt,
            prompt_set=prompt_set,
            prompt_file=prompt_file,
        )
        self.settings = Settings.from_kwargs({**seed, **settings})
        s = self.settings
        if isinstance(s.dataset_prompt, str) and P.PLACEHOLDER not in s.dataset_prompt:
            raise P.PromptError(f"dataset_prompt must contain {P.PLACEHOLDER}")
        self.templates = P.load_prompt_set(s.prompt_set, s.prompt_file)
        if s.prompt_key is not None and s.prompt_key not in self.templates:
            keys = ", ".join(sorted(self.templates))
            raise P.PromptError(f"unknown prompt key {s.prompt_key!r}; keys of prompt set {s.prompt_set!r}: {keys}")
        self.core = Judge(s, engine_kwargs=dict(engine_kwargs or {}))
        self.store = store
        self.stats = RunStats()
        self.shard: tuple[int, int] | None = None  # (i, n): judge only keys of shard i of n (rank1_eval.shards)
        self.progress: Progress | None = None
        self.engine_log: Path | None = None  # where the engine's own output goes while it loads (None: as is)
        self._traces: TraceSink | None = None  # set by ``session`` only
        self._missing: Missing | None = None  # set by ``session`` only
        meta = model_meta_for(self.model_name_or_path, s.revision, loader=load_rank1)
        kwargs = self.experiment_kwargs(resolve=False)
        # mteb's own cache then keeps runs of other settings apart, as for mteb.get_model(name, **kwargs)
        self.mteb_model_meta = meta.model_copy(update={"experiment_kwargs": kwargs}) if kwargs else meta

    # ----------------------------------------------------------------- settings, read-only views
    @property
    def model_name_or_path(self) -> str:
        return self.settings.model_name_or_path

    @property
    def revision(self) -> str | None:
        return self.settings.revision

    @property
    def engine_name(self) -> str:
        return self.core.engine_name

    @property
    def scoring(self) -> ScoringConfig:
        return self.core.scoring

    @property
    def engine_config(self) -> Any:
        return self.core.engine_config

    @property
    def engine_kwargs(self) -> dict[str, Any]:
        return self.core.engine_kwargs

    @property
    def dataset_prompt(self) -> str | bool | None:
        return self.settings.dataset_prompt

    @property
    def prompt_set(self) -> str:
        return self.settings.prompt_set

    @property
    def prompt_key(self) -> str | None:
        return self.settings.prompt_key

    @property
    def scheduling(self) -> str:
        return self.settings.scheduling

    @property
    def keep_token_ids(self) -> bool:
        return self.settings.keep_token_ids

    @property
    def chunk_size(self) -> int | None:
        return self.settings.chunk_size

    @property
    def dtype(self) -> str:
        """``fp_options`` in force: as given, else float16 on CUDA and float32 on CPU (resolves the device)."""
        return self.core.dtype

    # ----------------------------------------------------------------- loading
    @property
    def engine(self) -> Engine:
        return self.core.engine

    @property
    def scorer(self) -> Scorer:
        return self.core.scorer

    @property
    def rule(self) -> Rule:
        """The rule bound to the model's tokenizer (the tokenizer alone when the weights are not loaded)."""
        return self.core.rule

    @property
    def _engine(self) -> Engine | None:  # tests hand in a loaded engine this way; see use_engine
        return self.core.loaded_engine()

    @_engine.setter
    def _engine(self, engine: Engine | None) -> None:
        self.core.use_engine(engine)

    def use_engine(self, engine: Engine | None) -> None:
        """Judge with this already loaded engine (a session's shared engine, a test's scripted one)."""
        self.core.use_engine(engine)

    def with_scoring(self, **changes: Any) -> rank1:
        """This model with other rule settings (e.g. ``max_output_tokens``), sharing its loaded engine.

        The copy has its own keys and stats; closing either closes the shared engine."""
        other = object.__new__(rank1)
        other.__dict__.update(self.__dict__)
        other.settings = self.settings.replace(**changes)
        other.core = self.core.with_scoring(**changes)
        other.stats = RunStats()
        other._missing = other._traces = None
        return other

    def close(self) -> None:
        self.core.close()

    @contextmanager
    def session(
        self,
        *,
        store: Store | None = None,
        progress: Progress | None = None,
        engine_log: Path | None = None,
        traces: TraceSink | None = None,
        missing: Missing | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[RunStats]:
        """A run's context for the calls mteb makes: its store, display, engine log, where the traces of
        ``predict`` go, who judges what the store lacks (a budget sweep) and the shard. Yields the run's fresh
        :class:`RunStats`; everything is put back afterwards."""
        saved = (self.store, self.stats, self.progress, self.engine_log, self._traces, self._missing, self.shard)
        self.store, self.stats, self.progress, self.engine_log = store, RunStats(), progress, engine_log
        self._traces, self._missing, self.shard = traces, missing, shard
        try:
            yield self.stats
        finally:
            stats = self.stats
            (self.store, self.stats, self.progress, self.engine_log, self._traces, self._missing, self.shard) = saved
            self.stats = stats  # the run's figures stay readable after it (summary.json)

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
    def judgement_key(self, prompt: str | PreparedPrompt) -> str:
        """Store key of a prepared prompt (a bare prompt text is prepared first: it needs the tokenizer)."""
        if isinstance(prompt, str):
            prompt = self.prepare_prompts([prompt])[0]
        return self.core.key(prompt)

    def prepare_prompts(self, prompts: Sequence[str]) -> list[PreparedPrompt]:
        """Full prompt texts as the rule would prepare them (token counts, no cutting)."""
        tok = self.core.rule.tokenizer
        lengths = [len(ids) for ids in tok(list(prompts)).input_ids]
        return [PreparedPrompt(p, n, False) for p, n in zip(prompts, lengths, strict=True)]

    def forced_reserve(self) -> int:
        """Tokens the forced answer needs after a prompt (the tokenizer alone when the weights are not loaded)."""
        return self.core.rule.forced_reserve

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[PreparedPrompt]:
        """Prompts (with truncation) for final query texts and passage texts; needs only the tokenizer.

        Without a loaded engine only the tokenizer is loaded, so a run whose judgements are all in the store
        (a resumed run, or the final run after ``rank1-eval merge``) needs no GPU, server or weights.
        """
        return self.core.prepare(queries, passages)

    def tokenizer_only(self) -> Any:
        """The model's tokenizer without its weights (the engine's when it is loaded): for pre-flight checks."""
        return self.core.rule.tokenizer

    def judge_prompts(self, prepared: Sequence[PreparedPrompt], progress: Progress | None = None) -> list[Judgement]:
        """Judge prepared prompts through the store and the engine (see :meth:`rank1_eval.judge.Judge.judge`)."""
        return self.core.judge(
            prepared,
            store=self.store,
            stats=self.stats,
            progress=progress or self.progress,
            shard=self.shard,
            missing=self._missing,
            engine_log=self.engine_log,
        )

    def effective_chunk_size(self) -> int:
        """Pairs per engine call (= per store commit): explicit, or 1024, or 4 per request slot of the servers."""
        return self.core.effective_chunk_size()

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
        q, d = mteb_compat.loader_columns(inputs1), mteb_compat.loader_columns(inputs2)
        task = getattr(task_metadata, "name", None)
        prompts = self.prompts_from_columns(q, d, task, subset)
        if not prompts:
            return []
        judgements = self.judge_prompts(prompts, progress=self.progress)
        if self._traces is not None:
            context = {"task": task, "subset": subset, "split": split, "qids": q.get("id"), "docids": d.get("id")}
            self._traces(context, judgements)
        return [j.score for j in judgements]

    def prompts_from_columns(
        self, q: dict[str, list[Any]], d: dict[str, list[Any]], task: str | None, subset: str | None
    ) -> list[PreparedPrompt]:
        """The prompts for the query and document columns mteb hands ``predict`` (one row per pair).

        mteb 2.26 puts query + instruction in ``text`` and the query alone in ``query``; 2.12 has no ``query``
        column. The separate columns are merged by the rule's own merge (docs/rule.md §1).
        """
        n = len(q.get("id", q.get("text", [])))
        if n != len(d.get("text", [])):
            raise ValueError(f"mteb handed {n} queries but {len(d.get('text', []))} documents")
        if n == 0:
            return []
        queries = q["query"] if "query" in q else q["text"]
        instructions = q.get("instruction") or [None] * n
        final = self.final_queries(queries, instructions, task, subset)
        if self.progress is not None:
            self.progress.status(f"preparing {n} prompts (tokenizer)")
        return self.prepare(final, list(d["text"]))

    def batch_policy(self) -> dict[str, Any]:
        """How requests reach the engine: the scheduling policy, its window, and the engine's own batching."""
        policy: dict[str, Any] = {
            "scheduling": self.scheduling,
            "means": SCHEDULING[self.scheduling],
            "dedup": True,
            "commit_interval_s": COMMIT_INTERVAL_S,
            "order": "query-grouped, longest prompt first within a query",
        }
        engine = self._engine
        if self.scheduling == "chunked":
            policy["chunk_size"] = self.chunk_size or (self.effective_chunk_size() if engine else "auto")
        elif engine is not None:
            policy["window"] = engine.window
        policy["engine_batching"] = {
            "vllm": "continuous (vLLM scheduler)",
            "openai": "per-server request window",
            "transformers": "static batches of batch_size",
        }.get(self.engine_name)
        return policy

    # ----------------------------------------------------------------- the settings, for each consumer
    def _weights_id(self) -> str | None:
        return self.core.weights_id()

    def outcome_settings(self) -> dict[str, Any]:
        """The settings that can change what a result folder holds (its hash covers these): every setting whose
        role has ``hash`` set, named and valued as the folder hash always had them."""
        out: dict[str, Any] = {
            "model": self.model_name_or_path if not is_local(self.model_name_or_path) else "local",
            "revision": self.revision,
            "weights_fingerprint": self._weights_id(),
            "engine": self.engine_name,
            "dtype": self.dtype,
            "prompt_set_sha256": P.prompt_set_sha256(self.templates),
            **self.scoring.sampling(),
        }
        done = {"model_name_or_path", "revision", "engine", "fp_options", "prompt_file", "force_rethink"}
        for name in with_role(hash="always"):
            if name not in done:  # prompt_file: its content is prompt_set_sha256; the rest by name
                out[name] = getattr(self.settings, name)
        for name in with_role(hash="nondefault"):
            out.pop(name, None)
            if getattr(self.settings, name) != default(name):
                out[name] = getattr(self.settings, name)
        if RULE_VERSION != 2:  # version 2 is the first versioned rule: folders of it keep their names
            out["rule_version"] = RULE_VERSION
        return out

    def experiment_kwargs(self, *, resolve: bool = True) -> dict[str, Any]:
        """The settings that differ from rank1's defaults, as mteb's ``experiment_kwargs``.

        A dtype other than the device's default and an explicitly chosen Transformers engine count too; with
        ``resolve=False`` (construction) an undecided ``device="auto"`` leaves the dtype out.
        """
        out = {k: getattr(self.settings, k) for k, v in OUTCOME_DEFAULTS.items() if getattr(self.settings, k) != v}
        if self.settings.prompt_file is not None:  # the file's path says nothing portable; its content hash does
            out["prompt_file"] = P.prompt_set_sha256(self.templates)[:12]
        device = self.engine_config.device
        if resolve or device != "auto" or self.settings.fp_options is not None:
            dtype = self.dtype if resolve else (self.settings.fp_options or self.core._dtype or "")
            known = device if device != "auto" else (self.core.resolved_device() if resolve else None)
            if known is not None and dtype and dtype != default_dtype(known):
                out["fp_options"] = dtype
        if self.settings.engine == "transformers":
            out["engine"] = "transformers"
        return out

    def resolved_revision(self) -> str | None:
        """The Hub commit the weights come from, when the local Hub cache knows it (no network call)."""
        if is_local(self.model_name_or_path):
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
            "rule_version": RULE_VERSION,
            "sampling": self.scoring.sampling(),
            "length_rule": self.scoring.length_rule,
            "length_rules": dict(LENGTH_RULES),
            "force_rethink": self.scoring.force_rethink,
            "prompt_set": self.prompt_set,
            "prompt_set_sha256": P.prompt_set_sha256(self.templates),
            "prompt_key": self.prompt_key,
            "dataset_prompt": self.dataset_prompt,
            "settings": self.settings.public(),
            "batch_policy": self.batch_policy(),
        }
        engine = self._engine
        if engine is not None:
            info["engine_info"] = engine.info()
        return info


Rank1 = rank1


def pin_revision(model_name: str, revision: str | None) -> Any:
    """Let ``mteb.get_model(model_name, revision=revision)`` load that Hub commit (or branch/tag) of a rank1
    checkpoint; mteb's registry accepts only the revision its entry holds. Returns the new ModelMeta."""
    return _pin_revision(model_name, revision, loader=load_rank1)


def load_rank1(model_name: str, revision: str | None = None, **kwargs: Any) -> rank1:
    """mteb's loader of the registered checkpoints: ``mteb.get_model(name, **kw)`` -> ``rank1(name, ...)``."""
    return rank1(model_name, revision=revision, **kwargs)
