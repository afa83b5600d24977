"""Transformers backend: plain ``generate`` with vLLM's semantics (greedy, stop strings, top-k logprobs).

Mirrors the vLLM engine so both give the same paths and reasoning: the text keeps special tokens and ends
before the matched stop string, ``token_ids`` include the stop string's tokens (and an EOS when generation
ended on it), and the logprobs are those of the last generated position, in float32.

Greedy means greedy (docs/rule.md §12). Transformers fills every generation setting a caller leaves unset (5.x:
``None``; 4.x: equal to the global default) from the checkpoint's ``generation_config.json`` — sampling,
temperature, top-k/p, ``repetition_penalty``, ``no_repeat_ngram_size``, bad words, ``min_new_tokens``, assisted
decoding... — and a ``do_sample=False`` alone does not stop penalties or bad words. The reference decoded with vLLM
and explicit sampling parameters, so none of that ever applied. This engine therefore (1) replaces the loaded
model's ``generation_config`` with a neutral one that keeps only the checkpoint's EOS/pad/BOS ids (the file's EOS
ids stop generation, as vLLM's do), (2) passes every setting explicitly at its no-op value, and (3) passes
``use_model_defaults=False`` where ``generate`` takes it (transformers 4.50-4.x). Text rebuilt from token ids never
applies ``clean_up_tokenization_spaces`` (vLLM's detokenizer never does; it rewrites ``" ."`` to ``"."``).

Scheduling: **static batches**. Requests are queued on ``submit``; each ``collect`` runs one ``generate`` over
up to ``batch_size`` queued prompts of similar length (longest first, as the batch form always did) and returns
them together — a batch waits for its longest generation, there is no continuous batching here. Each row stops
at its own budget (a per-row stopping criterion). Forced answers (one restricted next-token distribution) run
as one forward pass over a batch, as soon as a batch of them is queued or no generation is left.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from rank1_eval.engines.base import BatchCalls, EngineConfig, EngineError, EngineLoad, Request
from rank1_eval.engines.device import check_device, torch_dtype
from rank1_eval.records import Completion, decode_ids

QUEUE_WINDOW = 1024  # requests a caller keeps queued: batches are picked longest-first among them

# Greedy decoding with nothing on top: each setting that adds a logits processor, a warper, a stopping rule or
# another decoding mode, at its no-op value (the values transformers' own defaults give when nothing is set).
NEUTRAL_GENERATION: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "num_return_sequences": 1,
    "temperature": 1.0,
    "top_k": 50,  # warpers (temperature, top-k/p, min-p, typical, epsilon, eta) only run when sampling
    "top_p": 1.0,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "guidance_scale": None,
    "max_time": None,
    "use_cache": True,
    "output_scores": False,
    "return_dict_in_generate": False,
}


def neutral_generation_config(**fields: Any) -> Any:
    """A ``GenerationConfig`` with every setting at its no-op value (``NEUTRAL_GENERATION``) plus ``fields``."""
    from transformers import GenerationConfig

    return GenerationConfig(**{**NEUTRAL_GENERATION, **fields})


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


class _RowBudgets:
    """A stopping criterion: row ``i`` is done once it generated ``budgets[i]`` tokens (per-pair budgets)."""

    def __init__(self, budgets: Sequence[int], prompt_len: int, device: Any) -> None:
        import torch

        self.limits = torch.tensor([prompt_len + b for b in budgets], device=device)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return input_ids.shape[1] >= self.limits


class TransformersEngine(BatchCalls):
    """``AutoModelForCausalLM`` on CPU or CUDA; static batches sorted by length to limit padding."""

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
        # nothing of the checkpoint's generation_config.json but its special ids may reach generate() (see above)
        checkpoint = self.model.generation_config
        self.model.generation_config = neutral_generation_config(
            eos_token_id=sorted(self._eos_ids) or None,
            pad_token_id=self._tokenizer.pad_token_id,
            bos_token_id=checkpoint.bos_token_id,
        )
        self._use_model_defaults = "use_model_defaults" in inspect.signature(self.model.generate).parameters
        self._torch = torch
        self._queue: list[tuple[Request, int]] = []  # (request, prompt length), in submission order

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

    @property
    def window(self) -> int:
        return max(QUEUE_WINDOW, 4 * self.config.batch_size)

    # ----------------------------------------------------------------- streaming (static batches)
    def submit(self, requests: Sequence[Request]) -> None:
        if any(r.continuation or not r.top_logprobs for r in requests):
            raise EngineError(
                "the transformers engine reads answer logprobs while decoding only (answer_logprobs='stream'); "
                "the prefill read needs the vllm or openai engine"
            )
        if not requests:
            return
        lengths = [len(ids) for ids in self._tokenizer([r.prompt for r in requests]).input_ids]
        self._queue.extend(zip(requests, lengths, strict=True))

    def _next_batch(self) -> list[tuple[Request, int]]:
        """Forced answers once a batch of them waits (or nothing else does), else the longest prompts."""
        size = max(1, self.config.batch_size)
        forced = [q for q in self._queue if q[0].forced]
        generation = [q for q in self._queue if not q[0].forced]
        if forced and (len(forced) >= size or not generation):
            pool = forced
        else:
            group = (generation[0][0].stop, generation[0][0].top_logprobs)  # one generate() per setting
            pool = [q for q in generation if (q[0].stop, q[0].top_logprobs) == group]
        batch = sorted(pool, key=lambda q: -q[1])[:size]  # stable: ties keep submission order
        chosen = {id(q) for q in batch}
        self._queue = [q for q in self._queue if id(q) not in chosen]
        return batch

    def collect(self) -> list[tuple[int, Completion]]:
        if not self._queue:
            return []
        batch = [r for r, _ in self._next_batch()]
        results = self._forced(batch) if batch[0].forced else self._generate(batch)
        return [(r.id, c) for r, c in zip(batch, results, strict=True)]

    def cancel(self) -> None:
        self._queue.clear()

    def load(self) -> EngineLoad | None:
        return None

    def _encode(self, prompts: Sequence[str]) -> dict[str, Any]:
        enc = self._tokenizer(list(prompts), return_tensors="pt", padding=True)
        return {k: v.to(self._device) for k, v in enc.items()}

    def _generate(self, batch: Sequence[Request]) -> list[Completion]:
        from transformers import LogitsProcessorList, StoppingCriteriaList

        stop, top_logprobs = batch[0].stop, batch[0].top_logprobs
        enc = self._encode([r.prompt for r in batch])
        prompt_len = enc["input_ids"].shape[1]
        recorder = _TopKRecorder(top_logprobs)
        budgets = [r.max_tokens for r in batch]
        gen_config = neutral_generation_config(
            max_new_tokens=max(budgets),
            stop_strings=list(stop) or None,
            pad_token_id=self._tokenizer.pad_token_id,
            eos_token_id=sorted(self._eos_ids) or None,
        )
        criteria = StoppingCriteriaList([_RowBudgets(budgets, prompt_len, self._device)])
        with self._torch.inference_mode():
            out = self.model.generate(
                **enc,
                generation_config=gen_config,
                logits_processor=LogitsProcessorList([recorder]),
                stopping_criteria=criteria,
                tokenizer=self._tokenizer,
                **({"use_model_defaults": False} if self._use_model_defaults else {}),
            )
        values = self._torch.stack(recorder.values, dim=1).cpu()  # [batch, steps, k]
        indices = self._torch.stack(recorder.indices, dim=1).cpu()
        results = []
        for row, r in enumerate(batch):
            gen = out[row, prompt_len:].tolist()[: r.max_tokens]  # after its budget a row holds only padding
            n_prompt = int(enc["attention_mask"][row].sum())
            results.append(self._completion(gen, values[row], indices[row], stop, r.max_tokens, n_prompt))
        return results

    def _completion(
        self, gen: list[int], values: Any, indices: Any, stop: Sequence[str], max_tokens: int, n_prompt: int
    ) -> Completion:
        tok = self._tokenizer
        # vLLM's semantics: stop at the first token after which the text holds a stop string, or at EOS (kept
        # in token_ids, not in the text), or at the budget. Decoding every prefix would be quadratic in the
        # output length, so decode once and binary-search the first prefix that contains a stop string.
        eos_at = next((j for j, t in enumerate(gen) if t in self._eos_ids), None)
        limit = min(len(gen), max_tokens) if eos_at is None else eos_at
        full = decode_ids(tok, gen[:limit])
        stop_reason = None
        if stop and any(s in full for s in stop):
            lo, hi = 1, limit
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in decode_ids(tok, gen[:mid]) for s in stop):
                    hi = mid
                else:
                    lo = mid + 1
            decoded = decode_ids(tok, gen[:lo])
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

    def _forced(self, batch: Sequence[Request]) -> list[Completion]:
        """One forward pass: the next-token distribution restricted to each request's allowed ids."""
        torch = self._torch
        enc = self._encode([r.prompt for r in batch])
        mask = enc["attention_mask"]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = self.model(**enc, position_ids=position_ids).logits[:, -1, :].float().cpu()
        results = []
        for row, r in enumerate(batch):
            cands = list(r.allowed_token_ids or ())
            restricted = torch.log_softmax(logits[row, torch.tensor(cands)], dim=-1).tolist()
            lps = {int(t): float(v) for t, v in zip(cands, restricted, strict=True)}
            best = max(lps, key=lambda t: lps[t])
            results.append(Completion("", (best,), "length", None, lps, int(mask[row].sum())))
        return results

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
