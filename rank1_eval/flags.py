"""No silent overrides: the one check of flags that another flag would override or the chosen engine ignores.

A week-long run must not be made with a setting the user asked for and did not get. Every such combination is
either an error naming both flags (the user meant something the run cannot do) or, where the combination is
meaningful, a warning that the run records in ``summary.json``'s ``run_warnings``.

``given`` is the set of destinations the user set (their value differs from the parser's default), so the
demo's own CPU-sized defaults never trip a check. Kept apart from ``cli.py`` so that the model flags can move
(into a settings model) without this table moving with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from rank1_eval.errors import UsageError

# flags only the in-process vLLM engine (and the vLLM servers of --data-parallel) reads
VLLM_ONLY = {
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "enforce_eager": "--enforce-eager",
    "max_num_seqs": "--max-num-seqs",
    "ngram_speculation": "--ngram-speculation",
}
# flags only the server engine (servers you started, or those of --data-parallel) reads
SERVER_ONLY = {
    "max_concurrency": "--max-concurrency",
    "request_timeout": "--request-timeout",
    "max_retries": "--max-retries",
    "stall_warning": "--stall-warning",
}
# flags that load the model: a server you started has loaded it with its own settings
LOAD_ONLY = {**VLLM_ONLY, "num_gpus": "--num-gpus", "device": "--device"}


def given_flags(args: Any, defaults: Any) -> set[str]:
    """The destinations whose value differs from the parser's default: what the user asked for."""
    return {k for k, v in vars(args).items() if k in vars(defaults) and v != getattr(defaults, k)}


def _show(flag: str, value: Any) -> str:
    return flag if isinstance(value, bool) else f"{flag} {value}"


def check_flags(args: Any, given: Set[str], *, budgets: list[int] | None = None) -> list[str]:
    """Raise :class:`UsageError` for a flag another flag overrides or the engine ignores; return the warnings a
    run records (combinations that are meaningful but easy to misread)."""
    from rank1_eval.engines import resolve_engine_name

    values: Mapping[str, Any] = vars(args)
    urls = tuple(values.get("server_urls") or ())
    data_parallel = int(values.get("data_parallel") or 1)
    engine = resolve_engine_name(values.get("engine") or "auto", server_urls=urls, data_parallel=data_parallel)
    servers = engine == "openai" or data_parallel > 1
    how = (
        "--engine transformers"
        if engine == "transformers"
        else "--server-url (engine openai)"
        if engine == "openai"
        else "--engine vllm"
    )
    errors: list[str] = []
    warnings: list[str] = []

    def refuse(dest: str, flag: str, why: str) -> None:
        errors.append(f"{_show(flag, values[dest])} with {why}")

    if engine == "transformers":
        for dest, flag in VLLM_ONLY.items():
            if dest in given:
                refuse(dest, flag, f"{how}: the Transformers engine ignores it (drop it, or use --engine vllm)")
        for dest, flag in SERVER_ONLY.items():
            if dest in given:
                refuse(dest, flag, f"{how}: only server engines read it (--server-url or --data-parallel N)")
    elif engine == "openai":
        for dest, flag in LOAD_ONLY.items():
            if dest in given:
                refuse(
                    dest,
                    flag,
                    f"{how}: your servers were started with their own settings; set it where "
                    "you start them (vllm serve ...)",
                )
    elif not servers:  # in-process vLLM
        for dest, flag in SERVER_ONLY.items():
            if dest in given:
                refuse(dest, flag, f"{how}: only server engines read it (--server-url or --data-parallel N)")
    if servers and engine != "openai" and "ngram_speculation" in given:  # local servers of --data-parallel
        refuse(
            "ngram_speculation",
            "--ngram-speculation",
            "--data-parallel: the local vLLM servers are started without speculation; drop one of them",
        )
    if "chunk_size" in given and values.get("scheduling", "stream") != "chunked":
        refuse(
            "chunk_size",
            "--chunk-size",
            "--scheduling stream (the default): chunks exist only under --scheduling chunked",
        )
    if values.get("skip_prompt"):
        prompt_flags = {"prompt_key": "--prompt-key", "prompt_file": "--prompt-file", "prompt_set": "--prompt-set"}
        for dest, flag in prompt_flags.items():
            if dest in given:
                refuse(dest, flag, "--skip-prompt: no dataset prompt is used at all; drop one of them")
    if budgets and "max_output_tokens" in given and max(budgets) != values["max_output_tokens"]:
        top = max(budgets)
        if top > values["max_output_tokens"]:
            refuse(
                "max_output_tokens",
                "--max-output-tokens",
                f"--budgets {values.get('budgets')}: the run is "
                f"made at the largest budget ({top}); drop --max-output-tokens or make it {top}",
            )
        else:
            warnings.append(
                f"--max-output-tokens {values['max_output_tokens']} is above the largest of --budgets "
                f"{values.get('budgets')}: the run is made at {values['max_output_tokens']} and the budgets are "
                "derived below it"
            )
    if errors:
        raise UsageError("; ".join(errors))
    return warnings


def check_model_reachable(model: str, revision: str | None = None, *, default: bool = False) -> None:
    """Fail in one line, before the task loads, when a Hub model is neither cached nor reachable.

    Without this, an offline machine spends a minute in the Hub client's retries (each warning printed twice)
    and then says only that the tokenizer could not be loaded. A local folder, or a model in the Hugging Face
    cache, passes at once; otherwise the Hub gets one short connection attempt.
    """
    import os
    import socket

    if os.path.isdir(model) or model.count("/") != 1 or model.startswith(("/", ".", "~")):
        return  # a local path: the model's own loader says what is wrong with it
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 -- an unusual cache layout: let the loader decide
        return
    if isinstance(cached, str):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
            return
        except OSError:
            pass
    why = "HF_HUB_OFFLINE is set" if offline else "huggingface.co cannot be reached"
    which = f"the default --model {model}" if default else f"--model {model}"
    raise UsageError(
        f"{which} is not in the local Hugging Face cache and {why}: pass a local model folder with --model PATH "
        "(or run once online to cache it; `rank1-eval run` without --task runs the bundled micro rank1)"
    )
