"""One description of a run's model-side settings: the single source of every place that lists them.

:class:`Settings` is a frozen dataclass; each field's metadata (:class:`Role`) says, once, where the setting goes:

* ``flag``/``help``/``choices``/``kind``: the ``rank1-eval`` option (``rank1_eval.cli`` generates its model flags
  from these; ``kind`` names the parser type the CLI maps it to),
* ``key``: how it enters the judgement key (``"value"`` as is, ``"request"`` only through the exact pass-1
  request it shapes, ``"identity"`` the model's identity, ``"numerics"`` the numerics that change outputs) or
  ``"no: <why>"`` when it cannot change a judgement,
* ``hash``: whether it enters the result folder's hash (``"always"``; ``"nondefault"`` only when off its
  default, so folders of earlier versions keep their names; ``None`` never: operational),
* ``experiment``: whether a non-default value is one of mteb's ``experiment_kwargs``,
* ``group``: model identity, numerics/engine, rule, prompts or scheduling.

Every field is a keyword argument of :class:`rank1_eval.model.rank1` and lands in ``summary.json``'s provenance.
A setting of the rule is a field of :class:`~rank1_eval.scoring.ScoringConfig` *and* one line here; the test
``tests/test_settings.py`` fails while a field exists in one place and not the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rank1_eval.scoring import ANSWER_LOGPROBS, ANSWER_RULES, LENGTH_RULES, ScoringConfig

DEFAULT_MODEL = "jhu-clsp/rank1-7b"
GROUPS = ("model identity", "numerics and engine", "rule", "prompts", "scheduling")
KEY_ROLES = ("value", "request", "identity", "numerics")
HASH_ROLES = ("always", "nondefault", None)
CLI_KINDS = ("str", "int>=0", "int>=1", "int>=2", "fraction", "float>0", "failed_score", "flag", "append")


@dataclass(frozen=True)
class Role:
    """Where a setting goes (see the module docstring)."""

    group: str
    flag: str
    help: str
    key: str
    hash: str | None
    experiment: bool = False
    kind: str = "str"
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    cli_default: Any = "=field"  # the flag's default when it differs from the field's (None = decided later)
    from_cli: Callable[[Any], Any] | None = None  # flag value -> keyword argument
    cli_group: str = "model"  # "model" or "scaling" (the --help section)

    def __post_init__(self) -> None:
        assert self.group in GROUPS, self.group
        assert self.key in KEY_ROLES or self.key.startswith("no: "), self.key
        assert self.hash in HASH_ROLES, self.hash
        assert self.kind in CLI_KINDS, self.kind


def _s(default: Any, role: Role, *, factory: bool = False) -> Any:
    if factory:
        return field(default_factory=default, metadata={"role": role})
    return field(default=default, metadata={"role": role})


def _skip_prompt(value: bool) -> bool | None:
    return False if value else None


def _seconds_or_auto(value: int | None) -> float | None:
    return None if value is None else float(value)


M, N, R, P, S = GROUPS  # noqa: N806 -- group names, short for the table below


@dataclass(frozen=True)
class Settings:
    """Every setting of a rank1 run that the model side sees (task and first stage are ``RunOptions``)."""

    # ---- model identity
    model_name_or_path: str = _s(
        DEFAULT_MODEL,
        Role(
            M,
            "--model",
            "model id or local folder (default: jhu-clsp/rank1-7b)",
            "identity",
            "always",
            cli_default=None,
        ),
    )
    revision: str | None = _s(
        None, Role(M, "--revision", "Hub revision (commit, branch or tag) of the model", "identity", "always")
    )
    trust_remote_code: bool = _s(
        False,
        Role(
            M,
            "--trust-remote-code",
            "run the checkpoint's own model code",
            "no: the same weights and code; refused otherwise",
            None,
            kind="flag",
        ),
    )
    # ---- numerics and engine
    num_gpus: int = _s(1, Role(N, "--num-gpus", "tensor parallel size", "numerics", None, kind="int>=1"))
    device: str | None = _s(
        "cuda",
        Role(N, "--device", "cuda or cpu (default: cuda when visible, else cpu)", "numerics", None, cli_default=None),
    )
    fp_options: str | None = _s(
        None,
        Role(
            N,
            "--dtype",
            "fp_options: float16 (GPU default), bfloat16, float32 (CPU default)",
            "numerics",
            "always",
            experiment=True,
        ),
    )
    engine: str = _s(
        "auto",
        Role(
            N,
            "--engine",
            "openai: vLLM servers at --server-url (auto picks it when URLs are given)",
            "numerics",
            "always",
            experiment=True,
            choices=("auto", "vllm", "transformers", "openai"),
        ),
    )
    gpu_memory_utilization: float = _s(
        0.9,
        Role(
            N,
            "--gpu-memory-utilization",
            "vLLM's share of GPU memory, in (0, 1]",
            "no: memory, not numerics",
            None,
            kind="fraction",
        ),
    )
    enforce_eager: bool = _s(
        False,
        Role(
            N,
            "--enforce-eager",
            "vLLM without CUDA graphs (faster start)",
            "no: the same kernels' results, captured or not",
            None,
            kind="flag",
        ),
    )
    max_num_seqs: int | None = _s(
        None,
        Role(
            N,
            "--max-num-seqs",
            "vLLM sequences in flight (default: vLLM's)",
            "no: batch size only",
            None,
            kind="int>=1",
        ),
    )
    kv_cache_memory_bytes: int | None = _s(
        None,
        Role(N, "--kv-cache-memory-bytes", "cap vLLM's KV cache (bytes; CPU)", "no: memory only", None, kind="int>=1"),
    )
    batch_size: int = _s(
        16,
        Role(
            N,
            "--batch-size",
            "transformers engine: sequences per generate() call",
            "no: batch size only",
            None,
            kind="int>=1",
        ),
    )
    ngram_speculation: int = _s(
        0,
        Role(
            N,
            "--ngram-speculation",
            "vLLM prompt-lookup (n-gram) speculative decoding with K draft tokens (GPU; 0 = off)",
            "no: greedy speculation verifies every token",
            None,
            kind="int>=0",
            metavar="K",
        ),
    )
    # ---- the rule (fields of ScoringConfig)
    context_size: int = _s(
        16000,
        Role(
            R,
            "--context-size",
            "prompt + output tokens per pair (> --max-output-tokens)",
            "request",
            "always",
            experiment=True,
            kind="int>=2",
        ),
    )
    max_output_tokens: int = _s(
        8192,
        Role(
            R, "--max-output-tokens", "reasoning budget per pair", "request", "always", experiment=True, kind="int>=1"
        ),
    )
    failed_score: float | str = _s(
        0.5,
        Role(
            R,
            "--failed-score",
            "score of a pair no pass could score (finite), or 'raise' to stop the run",
            "no: given to a stored failure when it is read",
            "always",
            experiment=True,
            kind="failed_score",
        ),
    )
    length_rule: str = _s(
        "reference",
        Role(
            R,
            "--length-rule",
            "reference (default, as the paper ran): a passage "
            "is cut only when the prompt alone leaves no room for the forced "
            "answer, each pair generates min(max_output_tokens, context_size - "
            "prompt tokens); reserve_output: prompts cut to context_size - "
            "max_output_tokens",
            "request",
            "always",
            experiment=True,
            choices=tuple(LENGTH_RULES),
        ),
    )
    force_rethink: int = _s(
        0,
        Role(
            R,
            "--force-rethink",
            "s1-style budget forcing (paper §3.6): N times, the "
            "model's closing </think> is replaced by '\\nWait' and decoding continues "
            "within the same budget; then scored as usual",
            "value",
            "nondefault",
            experiment=True,
            kind="int>=0",
            metavar="N",
        ),
    )
    answer_rule: str = _s(
        "rank1",
        Role(
            R,
            "--answer-rule",
            "rank1 (default): pass 1 is answered only when it stopped "
            "on '</think> true|false'; reference: the reference scripts' rule (bit for "
            "bit with the paper): any last position whose top-20 holds both answer "
            "tokens is scored in pass 1, budget-cut generations included, and a "
            "context-capped pair generates one token more, as vLLM 0.7.2 did",
            "value",
            "nondefault",
            experiment=True,
            choices=tuple(ANSWER_RULES),
        ),
    )
    answer_logprobs: str = _s(
        "stream",
        Role(
            R,
            "--answer-logprobs",
            "stream (default): top-20 logprobs at every "
            "generated position of pass 1, the last one read; prefill: pass 1 "
            "without logprobs, the answer position's top-20 read by a one-token "
            "request over the same prefix (vllm and openai engines; scores "
            "within 1e-6, not bit for bit)",
            "no: the same logical request "
            "(top-20 at the answer position); scores within 1e-6 of stream, not "
            "bit-identical (BENCHMARKS.md)",
            "nondefault",
            choices=tuple(ANSWER_LOGPROBS),
        ),
    )
    # ---- prompts
    dataset_prompt: str | bool | None = _s(
        None,
        Role(
            P,
            "--skip-prompt",
            "no dataset prompt (dataset_prompt=False)",
            "request",
            "always",
            experiment=True,
            kind="flag",
            from_cli=_skip_prompt,
        ),
    )
    prompt_set: str = _s(
        "code",
        Role(
            P,
            "--prompt-set",
            "bundled dataset prompts",
            "request",
            "always",
            experiment=True,
            choices=("code", "paper"),
        ),
    )
    prompt_file: str | Path | None = _s(
        None,
        Role(
            P,
            "--prompt-file",
            "JSON {key: template} overriding the bundled prompts",
            "request",
            "always",
            experiment=True,
        ),
    )
    prompt_key: str | None = _s(
        None,
        Role(
            P,
            "--prompt-key",
            "use this dataset template for every task, e.g. "
            "SciFact for a local BEIR copy of SciFact (a key of the prompt set)",
            "request",
            "always",
            experiment=True,
            metavar="KEY",
        ),
    )
    # ---- scheduling and operations
    scheduling: str = _s(
        "stream",
        Role(
            S,
            "--scheduling",
            "stream (default): requests stream into the engine, "
            "each judgement stored when final; chunked: the former synchronous "
            "chunks of --chunk-size pairs",
            "no: order of work only",
            None,
            choices=("stream", "chunked"),
        ),
    )
    chunk_size: int | None = _s(
        None,
        Role(
            S,
            "--chunk-size",
            "--scheduling chunked: pairs per engine call (default 1024; with servers 4 per request slot, at least 256)",
            "no: order of work only",
            None,
            kind="int>=1",
        ),
    )
    keep_token_ids: bool = _s(
        False,
        Role(
            S,
            "--keep-token-ids",
            "keep pass 1's generated token ids in each judgement (what `rank1-eval sweep` cuts)",
            "no: what is kept, not what is generated",
            None,
            kind="flag",
        ),
    )
    server_urls: tuple[str, ...] = _s(
        tuple,
        Role(
            S,
            "--server-url",
            "a vLLM OpenAI-compatible server, e.g. http://host:8000/v1 (repeatable; engine openai)",
            "numerics",
            None,
            kind="append",
            metavar="URL",
            cli_group="scaling",
            from_cli=tuple,
        ),
        factory=True,
    )
    api_key_env: str = _s(
        "RANK1_API_KEY",
        Role(
            S,
            "--api-key-env",
            "environment variable holding the servers' API key (sent as Bearer, never logged)",
            "no: access only",
            None,
            metavar="VAR",
            cli_group="scaling",
        ),
    )
    max_concurrency: int | None = _s(
        None,
        Role(
            S,
            "--max-concurrency",
            "most requests in flight per server "
            "(default 256); below it the window follows the server's "
            "/metrics: its batch full, a few requests waiting",
            "no: order of work only",
            None,
            kind="int>=1",
            metavar="N",
            cli_group="scaling",
        ),
    )
    request_timeout: float | None = _s(
        None,
        Role(
            S,
            "--request-timeout",
            "seconds per request (default: 30 s + 0.2 s per output token of the request)",
            "no: operational",
            None,
            kind="float>0",
            cli_group="scaling",
        ),
    )
    max_retries: int = _s(
        5,
        Role(
            S,
            "--max-retries",
            "failed backoff rounds before a server is dropped",
            "no: operational",
            None,
            kind="int>=0",
            cli_group="scaling",
        ),
    )
    stall_warning_s: float | None = _s(
        None,
        Role(
            S,
            "--stall-warning",
            "warn when no request has finished for "
            "S seconds (0: never; default: 4x the slowest request so far, "
            "at least 60 s)",
            "no: operational",
            None,
            kind="int>=0",
            metavar="S",
            cli_group="scaling",
            cli_default=None,
            from_cli=_seconds_or_auto,
        ),
    )
    data_parallel: int = _s(
        1,
        Role(
            S,
            "--data-parallel",
            "start N local vLLM server replicas (num_gpus GPUs each) and spread the pairs over them",
            "no: replicas of the same numerics",
            None,
            kind="int>=1",
            metavar="N",
            cli_group="scaling",
        ),
    )

    def __post_init__(self) -> None:
        if isinstance(self.server_urls, str):
            object.__setattr__(self, "server_urls", (self.server_urls,))
        else:
            object.__setattr__(self, "server_urls", tuple(self.server_urls))
        if self.dataset_prompt is True:
            object.__setattr__(self, "dataset_prompt", None)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, who: str = "rank1") -> Settings:
        """Settings from keyword arguments; unknown names fail with the caller's name (as a signature would)."""
        unknown = sorted(set(kwargs) - set(names()))
        if unknown:
            raise TypeError(f"unknown argument(s) for {who}: {', '.join(unknown)}")
        return cls(**kwargs)

    def scoring(self) -> ScoringConfig:
        """The rule's settings: every field of ScoringConfig that is a setting (the rest keep their defaults)."""
        rule = {f.name: getattr(self, f.name) for f in fields(ScoringConfig) if f.name in names()}
        return ScoringConfig(**rule)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def non_default(self) -> dict[str, Any]:
        """Settings off their defaults (what a user chose)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != default(f.name)}

    def public(self) -> dict[str, Any]:
        """Every setting as JSON-ready values, for provenance (``summary.json``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value
        return out


def role(name: str) -> Role:
    return _FIELDS[name].metadata["role"]


def cli_dest(name: str) -> str:
    """The attribute the parsed flag lands in: argparse's own name for the flag (``--dtype`` -> ``dtype``), the
    field's name for a repeatable flag (``--server-url`` -> ``server_urls``)."""
    r = role(name)
    return name if r.kind == "append" else r.flag.removeprefix("--").replace("-", "_")


def names() -> tuple[str, ...]:
    return tuple(_FIELDS)


def default(name: str) -> Any:
    f = _FIELDS[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def with_role(**wanted: Any) -> tuple[str, ...]:
    """Names of the settings whose role has these attribute values, e.g. ``with_role(experiment=True)``."""
    return tuple(n for n in _FIELDS if all(getattr(role(n), k) == v for k, v in wanted.items()))


def key_values() -> tuple[str, ...]:
    """Settings that enter the judgement key as they are (``key="value"``)."""
    return with_role(key="value")


_FIELDS = {f.name: f for f in fields(Settings)}

# Parameters of rank1(...) that are not settings: objects a run hands over, not choices that describe it.
NOT_SETTINGS = {
    "store": "the judgement store object (the CLI's --store opens one)",
    "engine_kwargs": "extra keyword arguments for the engine class (API only, e.g. a test's hooks)",
    "model_name": "an alias of model_name_or_path (mteb's loader)",
}

# EngineConfig fields that no setting fills: fixed by the harness, not by the user.
ENGINE_INTERNAL = {
    "enable_prefix_caching": "always on (greedy results do not depend on it)",
    "load_stats": "set by the driver when it measures occupancy",
    "quiet": "set by the CLI while its status line is shown",
}
ENGINE_RENAMES = {"model": "model_name_or_path", "dtype": "fp_options"}  # EngineConfig field -> setting
