"""The rank1 rule (SPEC §1.3–§1.5): pass 1 (reason, then answer), pass 2 (forced answer), never a silent 0.5.

This module is the only place that knows what "true"/"false" mean. It asks an :class:`Engine` two questions
(complete greedily; give the restricted logprobs of two tokens) and turns the answers into
:class:`~rank1_eval.records.Judgement` records.

Differences from the reference scripts, on purpose and documented:

* A pair counts as *answered* in pass 1 only when generation stopped on ``"</think> true"`` or
  ``"</think> false"``, the last generated token is the answer token, and both answer tokens are among the
  top-k logprobs of that position. The reference only checked the last position's top-k, whatever it was.
* A pair that cannot be scored by either pass is ``path="failed"``: counted, flagged with an ``error``, and
  given the explicit ``failed_score`` (default 0.5, the reference's value; ``"raise"`` stops the run).
* Passages are truncated by tokens so the prompt fits ``context_size - max_output_tokens``; the judgement is
  flagged ``truncated``. The reference let vLLM drop such prompts (scored 0.5 silently).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rank1_eval.engines.base import Engine
from rank1_eval.prompts import format_prompt
from rank1_eval.records import Completion, Judgement

log = logging.getLogger(__name__)

STOP_STRINGS = ("</think> true", "</think> false")
SENTENCE_ENDS = (".", "!", "?")
PASS2_SUFFIX = "\n</think>"


class ScoringError(RuntimeError):
    """A pair could not be scored and the failure policy says to stop."""


class TokenizerError(ValueError):
    """The tokenizer cannot express rank1's answer tokens."""


class PromptTooLongError(ValueError):
    """A query that does not fit the prompt budget even with an empty passage."""


@dataclass(frozen=True)
class ScoringConfig:
    """Sampling settings of the rule; all of them enter the judgement key."""

    max_output_tokens: int = 8192
    context_size: int = 16000
    top_logprobs: int = 20
    failed_score: float | str = 0.5  # a float, or "raise"

    def __post_init__(self) -> None:
        if self.max_output_tokens < 1:
            raise ValueError(f"max_output_tokens must be >= 1, got {self.max_output_tokens}")
        if self.context_size <= self.max_output_tokens:
            raise ValueError(
                f"context_size ({self.context_size}) must exceed max_output_tokens ({self.max_output_tokens}): "
                "the prompt gets context_size - max_output_tokens tokens"
            )
        if self.top_logprobs < 2:
            raise ValueError("top_logprobs must be >= 2 (both answer tokens must fit)")
        if isinstance(self.failed_score, str) and self.failed_score != "raise":
            raise ValueError(f"failed_score must be a float or 'raise', got {self.failed_score!r}")

    @property
    def prompt_budget(self) -> int:
        return self.context_size - self.max_output_tokens

    def sampling(self) -> dict[str, Any]:
        """The settings that determine a judgement, for keys and provenance."""
        return {
            "temperature": 0.0,
            "max_output_tokens": self.max_output_tokens,
            "context_size": self.context_size,
            "top_logprobs": self.top_logprobs,
            "stop": list(STOP_STRINGS),
            "skip_special_tokens": False,
            "failed_score": self.failed_score,
        }


@dataclass(frozen=True)
class AnswerTokens:
    true_id: int
    false_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> AnswerTokens:
        """``" true"``/``" false"`` (leading space) must each be one token; computed, never hard-coded."""
        ids = {}
        for word in (" true", " false"):
            enc = tokenizer(word, add_special_tokens=False).input_ids
            if len(enc) != 1:
                raise TokenizerError(
                    f"tokenizer encodes {word!r} as {len(enc)} tokens {enc}; rank1 needs a single answer token "
                    "(is this a rank1 / Qwen2.5-family checkpoint?)"
                )
            ids[word] = enc[0]
        if ids[" true"] == ids[" false"]:
            raise TokenizerError("' true' and ' false' map to the same token id")
        return cls(ids[" true"], ids[" false"])


@dataclass(frozen=True)
class PreparedPrompt:
    """A prompt ready for the engine: the exact text, its token count and whether the passage was cut."""

    prompt: str
    prompt_tokens: int
    truncated: bool


def score_from_logprobs(lp_true: float, lp_false: float) -> float:
    """P(true) = exp(lt) / (exp(lt) + exp(lf)) = sigmoid(lt - lf), computed without overflow."""
    diff = lp_true - lp_false
    if diff >= 0:
        return 1.0 / (1.0 + math.exp(-diff))
    e = math.exp(diff)
    return e / (1.0 + e)


def cut_reasoning(text: str) -> str:
    """SPEC §1.4: rstrip; if not ending in . ! ?, cut after the last of them (if any); then strip."""
    t = text.rstrip()
    if not t.endswith(SENTENCE_ENDS):
        last = max(t.rfind(c) for c in SENTENCE_ENDS)
        if last >= 0:
            t = t[: last + 1]
    return t.strip()


def forced_prompt(prompt: str, reasoning: str) -> str:
    return prompt + "\n" + cut_reasoning(reasoning) + PASS2_SUFFIX


def _answer_logprobs(logprobs: dict[int, float], answer: AnswerTokens) -> tuple[float, float] | None:
    lt, lf = logprobs.get(answer.true_id), logprobs.get(answer.false_id)
    if lt is None or lf is None or not (math.isfinite(lt) and math.isfinite(lf)):
        return None
    return lt, lf


def pass1_answer(completion: Completion, answer: AnswerTokens) -> tuple[float, float] | None:
    """The answer logprobs if pass 1 answered (SPEC §1.3, stricter than the reference), else None."""
    if completion.finish_reason != "stop" or completion.stop_reason not in STOP_STRINGS:
        return None
    if not completion.token_ids or completion.token_ids[-1] not in (answer.true_id, answer.false_id):
        return None
    return _answer_logprobs(completion.last_logprobs, answer)


def fit_prompt(tokenizer: Any, query: str, passage: str, budget: int) -> PreparedPrompt:
    """Format the rank1 prompt, cutting the passage by tokens until the prompt fits ``budget`` tokens."""
    prompt = format_prompt(query, passage)
    n = len(tokenizer(prompt).input_ids)
    if n <= budget:
        return PreparedPrompt(prompt, n, False)
    doc_ids = tokenizer(passage, add_special_tokens=False).input_ids
    keep = max(0, len(doc_ids) - (n - budget))
    while True:
        cut = tokenizer.decode(doc_ids[:keep], skip_special_tokens=False)
        prompt = format_prompt(query, cut)
        n = len(tokenizer(prompt).input_ids)
        if n <= budget:
            return PreparedPrompt(prompt, n, True)
        if keep == 0:
            raise PromptTooLongError(
                f"the query alone needs {n} prompt tokens, more than the budget of {budget} "
                "(context_size - max_output_tokens); raise context_size or lower max_output_tokens"
            )
        keep = max(0, keep - max(1, n - budget))


class Scorer:
    """Applies the rank1 rule with one engine; stateless apart from the engine and settings."""

    def __init__(self, engine: Engine, config: ScoringConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ScoringConfig()
        self.answer = AnswerTokens.from_tokenizer(engine.tokenizer)

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[PreparedPrompt]:
        """Prompts for (final query text, passage text) pairs, truncated to the prompt budget."""
        tok = self.engine.tokenizer
        prompts = [format_prompt(q, p) for q, p in zip(queries, passages, strict=True)]
        lengths = [len(ids) for ids in tok(prompts).input_ids] if prompts else []
        budget = self.config.prompt_budget
        out = []
        for q, p, prompt, n in zip(queries, passages, prompts, lengths, strict=True):
            out.append(PreparedPrompt(prompt, n, False) if n <= budget else fit_prompt(tok, q, p, budget))
        return out

    def score(self, prepared: Sequence[PreparedPrompt]) -> list[Judgement]:
        """Pass 1 on all prompts in one engine call, then pass 2 batched over the incomplete ones."""
        if not prepared:
            return []
        cfg = self.config
        completions = self.engine.complete(
            [p.prompt for p in prepared],
            max_tokens=cfg.max_output_tokens,
            stop=STOP_STRINGS,
            top_logprobs=cfg.top_logprobs,
        )
        results: list[Judgement | None] = [None] * len(prepared)
        pending: list[int] = []
        for i, (prep, comp) in enumerate(zip(prepared, completions, strict=True)):
            answered = pass1_answer(comp, self.answer)
            if answered is None:
                pending.append(i)
                continue
            results[i] = Judgement(
                score=score_from_logprobs(*answered),
                reasoning=comp.text,
                path="pass1",
                prompt_tokens=prep.prompt_tokens,
                output_tokens=comp.output_tokens,
                finish_reason=comp.finish_reason,
                truncated=prep.truncated,
                stop_reason=comp.stop_reason,
                logprob_true=answered[0],
                logprob_false=answered[1],
            )
        if pending:
            self._pass2(prepared, completions, pending, results)
        return [r for r in results if r is not None]

    def _pass2_prompt(self, prompt: str, reasoning: str) -> str:
        """The forced prompt; the reasoning is shortened by tokens in the rare case it overflows the context."""
        tok = self.engine.tokenizer
        forced = forced_prompt(prompt, reasoning)
        limit = self.config.context_size - 1
        excess = len(tok(forced).input_ids) - limit
        if excess > 0:
            ids = tok(cut_reasoning(reasoning), add_special_tokens=False).input_ids
            forced = forced_prompt(prompt, tok.decode(ids[: max(0, len(ids) - excess - 1)]))
        return forced

    def _pass2(
        self,
        prepared: Sequence[PreparedPrompt],
        completions: Sequence[Completion],
        pending: Sequence[int],
        results: list[Judgement | None],
    ) -> None:
        forced = [self._pass2_prompt(prepared[i].prompt, completions[i].text) for i in pending]
        logprobs = self.engine.forced_logprobs(forced, [self.answer.true_id, self.answer.false_id])
        for i, lps in zip(pending, logprobs, strict=True):
            prep, comp = prepared[i], completions[i]
            answered = _answer_logprobs(lps, self.answer)
            common = dict(
                reasoning=comp.text,
                prompt_tokens=prep.prompt_tokens,
                output_tokens=comp.output_tokens,
                finish_reason=comp.finish_reason,
                truncated=prep.truncated,
                stop_reason=comp.stop_reason,
                forced_reasoning=cut_reasoning(comp.text),
            )
            if answered is not None:
                results[i] = Judgement(
                    score=score_from_logprobs(*answered),
                    path="pass2",
                    logprob_true=answered[0],
                    logprob_false=answered[1],
                    **common,
                )
                continue
            error = f"forced answer gave no finite logprobs for both answer tokens (got {sorted(lps)})"
            if self.config.failed_score == "raise":
                raise ScoringError(f"a pair could not be scored and failed_score='raise' stops the run: {error}")
            log.warning("pair failed: %s; scored %s by policy", error, self.config.failed_score)
            results[i] = Judgement(score=float(self.config.failed_score), path="failed", error=error, **common)
