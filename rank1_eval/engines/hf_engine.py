"""Transformers backend: plain ``generate`` with vLLM's semantics (greedy, stop strings, top-k logprobs).

Mirrors the vLLM engine so both give the same paths and reasoning: the text keeps special tokens and ends
before the matched stop string, ``token_ids`` include the stop string's tokens (and an EOS when generation
ended on it), and the logprobs are those of the last generated position, in float32. The model's own
``generation_config`` (penalties, sampling) is ignored on purpose: rank1 decodes greedily with no processors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rank1_eval.engines.base import EngineConfig
from rank1_eval.engines.device import check_device, torch_dtype
from rank1_eval.records import Completion


class _TopKRecorder:
    """A logits processor that records the top-k float32 logprobs of every step (not the whole vocab)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values: list[Any] = []
        self.indices: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logprobs = torch.log_softmax(scores.float(), dim=-1)
        top = logprobs.topk(self.k, dim=-1)
        self.values.append(top.values)
        self.indices.append(top.indices)
        return scores


class TransformersEngine:
    """``AutoModelForCausalLM`` on CPU or CUDA; batches sorted by length to limit padding."""

    kind = "transformers"

    def __init__(self, config: EngineConfig) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_device(config.device, config.dtype, config.num_gpus)
        self.config = config
        self._version = transformers.__version__
        self._tokenizer = AutoTokenizer.from_pretrained(
            config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
        self._tokenizer.padding_side = "left"
        if self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token = self._tokenizer.eos_token
        device_map = "auto" if config.device.startswith("cuda") and config.num_gpus > 1 else None
        self.model = AutoModelForCausalLM.from_pretrained(
            config.model,
            revision=config.revision,
            dtype=torch_dtype(config.dtype),
            trust_remote_code=config.trust_remote_code,
            device_map=device_map,
        )
        if device_map is None:
            self.model.to(config.device)
        self.model.eval()
        self._device = next(self.model.parameters()).device
        self._eos_ids = self._collect_eos_ids()
        self._torch = torch

    def _collect_eos_ids(self) -> set[int]:
        ids = set()
        for source in (self.model.generation_config.eos_token_id, self._tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(source)
        return ids

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def _batches(self, prompts: Sequence[str]) -> list[list[int]]:
        """Index batches of similar prompt length (longest first), so padding stays small."""
        lengths = [len(ids) for ids in self._tokenizer(list(prompts)).input_ids]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        size = max(1, self.config.batch_size)
        return [order[i : i + size] for i in range(0, len(order), size)]

    def _encode(self, prompts: Sequence[str]) -> dict[str, Any]:
        enc = self._tokenizer(list(prompts), return_tensors="pt", padding=True)
        return {k: v.to(self._device) for k, v in enc.items()}

    def complete(
        self, prompts: Sequence[str], *, max_tokens: int, stop: Sequence[str], top_logprobs: int = 20
    ) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList

        results: list[Completion | None] = [None] * len(prompts)
        for batch in self._batches(prompts):
            enc = self._encode([prompts[i] for i in batch])
            recorder = _TopKRecorder(top_logprobs)
            gen_config = GenerationConfig(
                do_sample=False,
                max_new_tokens=max_tokens,
                stop_strings=list(stop),
                pad_token_id=self._tokenizer.pad_token_id,
                eos_token_id=sorted(self._eos_ids) or None,
            )
            with self._torch.inference_mode():
                out = self.model.generate(
                    **enc,
                    generation_config=gen_config,
                    logits_processor=LogitsProcessorList([recorder]),
                    tokenizer=self._tokenizer,
                )
            prompt_len = enc["input_ids"].shape[1]
            values = self._torch.stack(recorder.values, dim=1).cpu()  # [batch, steps, k]
            indices = self._torch.stack(recorder.indices, dim=1).cpu()
            for row, i in enumerate(batch):
                gen = out[row, prompt_len:].tolist()
                n_prompt = int(enc["attention_mask"][row].sum())
                results[i] = self._completion(gen, values[row], indices[row], stop, max_tokens, n_prompt)
        return [r for r in results if r is not None]

    def _completion(
        self, gen: list[int], values: Any, indices: Any, stop: Sequence[str], max_tokens: int, n_prompt: int
    ) -> Completion:
        tok = self._tokenizer
        # vLLM's semantics: stop at the first token after which the text holds a stop string, or at EOS (kept
        # in token_ids, not in the text), or at the budget. Decoding every prefix would be quadratic in the
        # output length, so decode once and binary-search the first prefix that contains a stop string.
        eos_at = next((j for j, t in enumerate(gen) if t in self._eos_ids), None)
        limit = min(len(gen), max_tokens) if eos_at is None else eos_at
        full = tok.decode(gen[:limit], skip_special_tokens=False)
        stop_reason = None
        if any(s in full for s in stop):
            lo, hi = 1, limit
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in tok.decode(gen[:mid], skip_special_tokens=False) for s in stop):
                    hi = mid
                else:
                    lo = mid + 1
            decoded = tok.decode(gen[:lo], skip_special_tokens=False)
            pos, stop_reason = min((decoded.find(s), s) for s in stop if s in decoded)
            end, finish, text = lo, "stop", decoded[:pos]
        elif eos_at is not None:
            end, finish, text = eos_at + 1, "stop", full
        else:
            end, finish, text = limit, "length", full
        last = {}
        if end:
            pairs = zip(indices[end - 1].tolist(), values[end - 1].tolist(), strict=True)
            last = {int(t): float(v) for t, v in pairs}
        return Completion(
            text=text,
            token_ids=tuple(gen[:end]),
            finish_reason=finish,
            stop_reason=stop_reason,
            last_logprobs=last,
            prompt_tokens=n_prompt,
        )

    def forced_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[dict[int, float]]:
        torch = self._torch
        cand = torch.tensor(list(candidates))
        results: list[dict[int, float] | None] = [None] * len(prompts)
        for batch in self._batches(prompts):
            enc = self._encode([prompts[i] for i in batch])
            mask = enc["attention_mask"]
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(**enc, position_ids=position_ids).logits[:, -1, :].float().cpu()
            restricted = torch.log_softmax(logits[:, cand], dim=-1)
            for row, i in enumerate(batch):
                results[i] = {int(t): float(v) for t, v in zip(candidates, restricted[row].tolist(), strict=True)}
        return [r for r in results if r is not None]

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.kind,
            "engine_version": self._version,
            "device": str(self._device),
            "dtype": self.config.dtype,
            "model": self.config.model,
            "revision": self.config.revision,
        }

    def close(self) -> None:
        self.model = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()
