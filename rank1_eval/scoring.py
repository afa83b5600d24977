"""The rank1 rule (docs/rule.md §4-§8): pass 1 (reason, then answer), pass 2 (forced answer), never a silent 0.5.

This module is the only place that knows what "true"/"false" mean. :class:`Rule` binds the rule to a tokenizer
and settings; :class:`PairState` walks one pair through it as a small state machine (pass 1 -> forced answer
-> :class:`~rank1_eval.records.Judgement`) that a scheduler drives request by request, in any order relative to
other pairs. :class:`Scorer` is the synchronous form (all pass-1 requests in one engine call, then all forced
answers in one), kept for the batch API and as the reference the streaming scheduler is tested against.

Differences from the reference scripts, on purpose and documented:

* A pair counts as *answered* in pass 1 only when generation stopped on ``"</think> true"`` or
  ``"</think> false"``, the last generated token is the answer token, and both answer tokens are among the
  top-k logprobs of that position (``answer_rule="rank1"``, the default). The reference only checked the last
  position's top-k, whatever it was: ``answer_rule="reference"`` reproduces that (see ``ANSWER_RULES``), and
  with it the budget vLLM 0.7.2's V0 engine gave a context-capped generation, one token more than the context
  leaves (:meth:`ScoringConfig.generation_budget`).
* A pair that cannot be scored by either pass is ``path="failed"``: counted, flagged with an ``error``, and
  given the explicit ``failed_score`` (default 0.5, the reference's value; ``"raise"`` stops the run).
* Lengths (``length_rule``, docs/rule.md §6). ``"reference"`` (default) keeps the reference's semantics (vLLM 0.7.2
  with ``max_model_len = context_size``): any prompt that leaves room for the forced answer is scored in full,
  and each pair generates at most ``min(max_output_tokens, context_size - prompt_tokens)`` tokens; only a
  passage whose prompt alone would not leave that room is cut by tokens (flagged ``truncated``) — the
  reference let vLLM drop such prompts and scored them 0.5 silently. ``"reserve_output"`` (the rule before)
  cuts passages so every prompt fits ``context_size - max_output_tokens`` and every pair gets the full
  budget. Under both rules the forced prompt always fits the context: its reasoning is cut further by tokens
  if needed (flagged ``reasoning_cut``). A given prompt gets the same budget under either rule (under
  ``reserve_output`` every prompt is short enough for the full budget), so the length rule is provenance, not
  part of a judgement's identity.
* Budget forcing (``force_rethink=N``, docs/rule.md §7, the paper's §3.6, s1-style; the reference's code path
  crashed with a ``NameError``): pass 1 stops on ``"</think>"``, the closing is replaced by ``"\nWait"`` and
  decoding continues from ``prompt + text + "\nWait"`` (text level, as s1), N times; the last round stops on
  the answer as usual. The rounds share the pair's generation budget; one left without budget ends in pass 2.
  The judgement's reasoning is the rounds' texts joined by ``"\nWait"``, ``rounds`` lists each round.
* Where the answer logprobs are read (``answer_logprobs``, docs/rule.md §4). ``"stream"`` (default, the reference's
  way): pass 1 asks for the top-k logprobs of every generated position and the rule reads the last one.
  ``"prefill"``: pass 1 decodes without logprobs (same stop strings, so the same tokens); when it stopped on
  ``"</think> true|false"`` one more request reads the top-k at the answer position — the prompt plus the
  generated ids before the answer token (``Request.continuation``), ``max_tokens=1`` — a prefill served by the
  prefix cache. The logical request is the same (top-k at the answer position), so it is not part of a
  judgement's key; the rule applied to the logprobs is the same code.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rank1_eval.engines.base import Engine, Request, run_requests
from rank1_eval.prompts import format_prompt
from rank1_eval.records import Completion, Judgement, decode_ids

log = logging.getLogger(__name__)

# The version of the rule and of the engines' decoding semantics, part of every judgement key: bump it with any
# change that can change a judgement of the same request (tests/test_settings.py pins it to a digest of this
# file's code, and a golden set of micro rank1 judgements). Version 1 was the unversioned key scheme; 2 the rule as
# it was then; 3 greedy on every engine (the Transformers engine and servers no longer apply the checkpoint's
# generation_config) and the reference's answer rule as an option.
RULE_VERSION = 3
# pass 2 re-tokenises the decoded reasoning, which may take a few tokens more than were generated: a request is
# "near the context" (its pass 2 may be cut by context_size) within this many tokens
PASS2_MARGIN = 16

STOP_STRINGS = ("</think> true", "</think> false")
THINK_END = "</think>"  # force_rethink: a round stops when the model closes its reasoning...
WAIT = "\nWait"  # ...and the closing is replaced by this before decoding continues (s1's budget forcing)
SENTENCE_ENDS = (".", "!", "?")
PASS2_SUFFIX = "\n</think>"
ANSWER_LOGPROBS = {
    "stream": "top-k logprobs at every generated position of pass 1; the rule reads the last one",
    "prefill": "pass 1 without logprobs; the answer position's top-k read by a one-token request over the same "
    "prefix (prompt + generated ids before the answer token), served by the prefix cache",
}
LENGTH_RULES = {
    "reference": "passages cut only when the prompt alone leaves no room for the forced answer; each pair "
    "generates min(max_output_tokens, context_size - prompt_tokens) tokens",
    "reserve_output": "passages cut so every prompt fits context_size - max_output_tokens; each pair generates "
    "max_output_tokens tokens",
}

ANSWER_RULES = {
    "rank1": "pass 1 answered only when generation stopped on '</think> true|false', the last generated token is "
    "the answer token and both answer tokens are in its top-k; each pair generates at most "
    "min(max_output_tokens, context_size - prompt_tokens) tokens",
    "reference": "the reference scripts' rule: pass 1 scored from the last generated position whenever both answer "
    "tokens are in its top-k, whatever ended the generation (budget, context, EOS); a context-capped pair generates "
    "context_size - prompt_tokens + 1 tokens, as vLLM 0.7.2's V0 engine let it",
}


class ScoringError(RuntimeError):
    """A pair could not be scored and the failure policy says to stop."""


class TokenizerError(ValueError):
    """The tokenizer cannot express rank1's answer tokens."""


class PromptTooLongError(ValueError):
    """A query that does not fit the prompt budget even with an empty passage."""


def rule_budget(rule: str, context_size: int, max_output_tokens: int, forced_reserve: int) -> int:
    """Most prompt tokens a pair may have under length rule ``rule`` (<= 0: the rule cannot run these sizes)."""
    if rule == "reserve_output":
        return min(context_size - max_output_tokens, context_size - forced_reserve)
    return context_size - forced_reserve


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the rule. Each field is also a setting (rank1_eval.settings); the judgement key holds the
    request they shape (``Rule.request_identity``), not the fields themselves."""

    max_output_tokens: int = 8192
    context_size: int = 16000
    top_logprobs: int = 20
    failed_score: float | str = 0.5  # a float, or "raise"
    length_rule: str = "reference"
    force_rethink: int = 0  # rounds of s1-style budget forcing (docs/rule.md §7, paper §3.6); 0 = the plain rule
    answer_rule: str = "rank1"  # "reference": the reference scripts' pass-1 rule and vLLM 0.7.2's length cap
    answer_logprobs: str = "stream"  # where pass 1's answer logprobs are read (ANSWER_LOGPROBS); not in the key

    def __post_init__(self) -> None:
        if self.answer_rule not in ANSWER_RULES:
            raise ValueError(f"answer_rule must be one of {', '.join(ANSWER_RULES)}, got {self.answer_rule!r}")
        if self.answer_logprobs not in ANSWER_LOGPROBS:
            raise ValueError(
                f"answer_logprobs must be one of {', '.join(ANSWER_LOGPROBS)}, got {self.answer_logprobs!r}"
            )
        if self.answer_logprobs == "prefill" and self.force_rethink:
            raise ValueError("answer_logprobs='prefill' reads the answer of one round: not with force_rethink")
        if self.answer_logprobs == "prefill" and self.answer_rule != "rank1":
            raise ValueError(
                "answer_logprobs='prefill' reads the answer position only: not with answer_rule "
                f"{self.answer_rule!r}, which reads the last position of every generation"
            )
        if self.max_output_tokens < 1:
            raise ValueError(f"max_output_tokens must be >= 1, got {self.max_output_tokens}")
        if self.length_rule not in LENGTH_RULES:
            raise ValueError(f"length_rule must be one of {', '.join(LENGTH_RULES)}, got {self.length_rule!r}")
        if self.length_rule == "reserve_output" and self.context_size <= self.max_output_tokens:
            raise ValueError(
                f"context_size ({self.context_size}) must exceed max_output_tokens ({self.max_output_tokens}) "
                "under length_rule='reserve_output': the prompt gets context_size - max_output_tokens tokens"
            )
        if not isinstance(self.force_rethink, int) or self.force_rethink < 0:
            raise ValueError(f"force_rethink must be an int >= 0, got {self.force_rethink!r}")
        if self.context_size < 8:
            raise ValueError(f"context_size must be >= 8, got {self.context_size}")
        if self.top_logprobs < 2:
            raise ValueError("top_logprobs must be >= 2 (both answer tokens must fit)")
        if isinstance(self.failed_score, str) and self.failed_score != "raise":
            raise ValueError(f"failed_score must be a float or 'raise', got {self.failed_score!r}")

    def prompt_budget(self, forced_reserve: int) -> int:
        """Most prompt tokens a pair may have before its passage is cut, under the length rule in force."""
        return rule_budget(self.length_rule, self.context_size, self.max_output_tokens, forced_reserve)

    def generation_budget(self, prompt_tokens: int) -> int:
        """Pass 1's ``max_tokens`` for a prompt: the output budget or what is left of the context.

        Under ``answer_rule="reference"`` (with the reference length rule) what is left of the context is one
        token more: vLLM 0.7.2's V0 ``StopChecker`` (``vllm/engine/output_processor/stop_checker.py``) ends a
        sequence only once ``seq.get_len() > max_model_len``, i.e. after ``max_model_len - prompt + 1`` tokens;
        the engine then needs ``max_model_len = context_size + 1`` (:meth:`engine_context_size`), since today's
        vLLM stops at ``num_tokens >= max_model_len``. The default rule keeps every request inside the context."""
        left = self.context_size - prompt_tokens + (1 if self._reference_length() else 0)
        return max(1, min(self.max_output_tokens, left))

    def _reference_length(self) -> bool:
        return self.answer_rule == "reference" and self.length_rule == "reference"

    def engine_context_size(self) -> int:
        """The context (``max_model_len``) the engine needs for every request of this rule."""
        return self.context_size + (1 if self._reference_length() else 0)

    def sampling(self) -> dict[str, Any]:
        """The sampling settings, for provenance and the result folder's hash (not the judgement key)."""
        return {
            "temperature": 0.0,
            "max_output_tokens": self.max_output_tokens,
            "context_size": self.context_size,
            "top_logprobs": self.top_logprobs,
            "stop": list(STOP_STRINGS),
            "skip_special_tokens": False,
            "failed_score": self.failed_score,
            # only when on, so the keys of every plain judgement stay what they were
            **({"force_rethink": self.force_rethink} if self.force_rethink else {}),
            **({"answer_rule": self.answer_rule} if self.answer_rule != "rank1" else {}),
        }

    def provenance(self) -> dict[str, Any]:
        rule = {
            "length_rule": self.length_rule,
            "length_rule_means": LENGTH_RULES[self.length_rule],
            "answer_rule": self.answer_rule,
            "answer_rule_means": ANSWER_RULES[self.answer_rule],
        }
        read = {"answer_logprobs": self.answer_logprobs, "answer_logprobs_means": ANSWER_LOGPROBS[self.answer_logprobs]}
        return {**self.sampling(), "force_rethink": self.force_rethink, **rule, **read}


def forced_reserve(tokenizer: Any) -> int:
    """Tokens the forced answer needs after the prompt: ``"\\n" + "" + "\\n</think>"`` plus the answer token."""
    return len(tokenizer("\n" + PASS2_SUFFIX, add_special_tokens=False).input_ids) + 1


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
    source_tokens: int | None = None  # the uncut prompt's tokens (dry runs count cut passages under each rule)


def score_from_logprobs(lp_true: float, lp_false: float) -> float:
    """P(true) = exp(lt) / (exp(lt) + exp(lf)) = sigmoid(lt - lf), computed without overflow."""
    diff = lp_true - lp_false
    if diff >= 0:
        return 1.0 / (1.0 + math.exp(-diff))
    e = math.exp(diff)
    return e / (1.0 + e)


def cut_reasoning(text: str) -> str:
    """docs/rule.md §5: rstrip; if not ending in . ! ?, cut after the last of them (if any); then strip."""
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


def stopped_on_answer(completion: Completion, answer: AnswerTokens) -> bool:
    """Pass 1 stopped on ``"</think> true|false"`` with the answer token last (its logprobs decide the rest)."""
    if completion.finish_reason != "stop" or completion.stop_reason not in STOP_STRINGS:
        return False
    return bool(completion.token_ids) and completion.token_ids[-1] in (answer.true_id, answer.false_id)


def pass1_answer(completion: Completion, answer: AnswerTokens, rule: str = "rank1") -> tuple[float, float] | None:
    """The answer logprobs if pass 1 answered, else None.

    ``"rank1"`` (docs/rule.md §4, stricter than the reference): stopped on an answer stop string and the last
    token is an answer token. ``"reference"``: the last generated position's top-k holds both answer tokens,
    whatever ended the generation (the reference scripts read ``logprobs[-1]`` and nothing else)."""
    if rule == "reference":
        return _answer_logprobs(completion.last_logprobs, answer)
    if not stopped_on_answer(completion, answer):
        return None
    return _answer_logprobs(completion.last_logprobs, answer)


def fit_prompt(tokenizer: Any, query: str, passage: str, budget: int, rule: str = "reference") -> PreparedPrompt:
    """Format the rank1 prompt, cutting the passage by tokens until the prompt fits ``budget`` tokens."""
    prompt = format_prompt(query, passage)
    n = len(tokenizer(prompt).input_ids)
    if n <= budget:
        return PreparedPrompt(prompt, n, False)
    doc_ids = tokenizer(passage, add_special_tokens=False).input_ids
    keep = max(0, len(doc_ids) - (n - budget))
    while True:
        cut = decode_ids(tokenizer, doc_ids[:keep])
        prompt = format_prompt(query, cut)
        n = len(tokenizer(prompt).input_ids)
        if n <= budget:
            return PreparedPrompt(prompt, n, True)
        if keep == 0:
            what = "context_size - max_output_tokens" if rule == "reserve_output" else "context_size - forced answer"
            raise PromptTooLongError(
                f"the query alone needs {n} prompt tokens, more than the budget of {budget} ({what}); "
                "raise context_size" + (" or lower max_output_tokens" if rule == "reserve_output" else "")
            )
        keep = max(0, keep - max(1, n - budget))


class Rule:
    """The rank1 rule bound to one tokenizer and its settings: prompts, per-pair requests, judgements."""

    def __init__(self, tokenizer: Any, config: ScoringConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config or ScoringConfig()
        self.answer = AnswerTokens.from_tokenizer(tokenizer)
        self.forced_reserve = forced_reserve(tokenizer)
        self.prompt_budget = self.config.prompt_budget(self.forced_reserve)
        if self.prompt_budget < 1:
            raise ValueError(
                f"context_size {self.config.context_size} leaves no room for a prompt "
                f"(length rule {self.config.length_rule!r})"
            )

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[PreparedPrompt]:
        """Prompts for (final query text, passage text) pairs, passages cut only as the length rule says."""
        tok = self.tokenizer
        prompts = [format_prompt(q, p) for q, p in zip(queries, passages, strict=True)]
        lengths = [len(ids) for ids in tok(prompts).input_ids] if prompts else []
        budget, rule = self.prompt_budget, self.config.length_rule
        out = []
        for q, p, prompt, n in zip(queries, passages, prompts, lengths, strict=True):
            fitted = PreparedPrompt(prompt, n, False) if n <= budget else fit_prompt(tok, q, p, budget, rule)
            out.append(replace(fitted, source_tokens=n))
        return out

    def pair(self, prepared: PreparedPrompt, *, keep_token_ids: bool = False) -> PairState:
        return PairState(self, prepared, keep_token_ids=keep_token_ids)

    def pass1_request(self, prepared: PreparedPrompt) -> Request:
        """The first request of a pair, the logical one (top-k at the answer position, whichever way
        ``answer_logprobs`` reads it; under ``force_rethink`` it stops where the model closes its reasoning)."""
        cfg = self.config
        stop = (THINK_END,) if cfg.force_rethink else STOP_STRINGS
        return Request(prepared.prompt, cfg.generation_budget(prepared.prompt_tokens), stop, cfg.top_logprobs)

    def request_identity(self, prepared: PreparedPrompt) -> dict[str, Any]:
        """What pass 1 asks of the engine, for the judgement key: prompt, budget, stop strings, top-k logprobs,
        and ``pass2_context`` (the context size) only when pass 2's forced prompt (prompt + reasoning + closing,
        with ``"\nWait"`` per forced round) may not fit it: otherwise the context cannot change the judgement."""
        cfg = self.config
        request = self.pass1_request(prepared)
        waits = cfg.force_rethink * len(self.tokenizer(WAIT, add_special_tokens=False).input_ids)
        need = prepared.prompt_tokens + request.max_tokens + self.forced_reserve + waits + PASS2_MARGIN
        return {
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "stop": list(request.stop),
            "top_logprobs": request.top_logprobs,
            "pass2_context": cfg.context_size if need > cfg.context_size else None,
        }

    def answer_read_request(self, prompt: str, pass1: Completion) -> Request:
        """answer_logprobs='prefill': the top-k at pass 1's answer position, over the same prefix (one token)."""
        return Request(prompt, 1, (), self.config.top_logprobs, continuation=pass1.token_ids[:-1])

    def forced_request(self, prompt: str, reasoning: str) -> tuple[Request, str, bool]:
        """The forced-answer request, the reasoning text it carries, and whether that was cut by tokens to fit.

        The forced prompt always fits the context (one token is left for the answer): the sentence-cut
        reasoning is shortened by tokens until it does, down to none at all (the prompt budget keeps room)."""
        tok = self.tokenizer
        limit = self.config.context_size - 1
        text = cut_reasoning(reasoning)
        forced = prompt + "\n" + text + PASS2_SUFFIX
        n = len(tok(forced).input_ids)
        cut = False
        if n > limit:
            cut = True
            ids = tok(text, add_special_tokens=False).input_ids
            keep = len(ids)
            while n > limit and keep > 0:
                keep = max(0, keep - (n - limit))
                text = cut_reasoning(decode_ids(tok, ids[:keep]))
                forced = prompt + "\n" + text + PASS2_SUFFIX
                n = len(tok(forced).input_ids)
        cands = (self.answer.true_id, self.answer.false_id)
        return Request(forced, 1, (), len(cands), cands), text, cut

    def failure(self, error: str, **fields: Any) -> Judgement:
        if self.config.failed_score == "raise":
            raise ScoringError(f"a pair could not be scored and failed_score='raise' stops the run: {error}")
        log.warning("pair failed: %s; scored %s by policy", error, self.config.failed_score)
        return Judgement(score=float(self.config.failed_score), path="failed", error=error, **fields)


class PairState:
    """One pair's way through the rule, driven request by request by a scheduler (or :class:`Scorer`).

    ``start()`` gives the pass-1 request; ``advance(completion)`` takes the completion of the request last
    given and returns the next request (the forced answer) or the final :class:`Judgement`. Stages are
    explicit (``pass1`` -> [``answer_read``] -> ``forced`` -> ``done``) so further rounds can slot in between
    pass 1 and the forced answer without the scheduler changing.
    """

    __slots__ = ("rule", "prepared", "stage", "keep_token_ids", "pass1", "forced_text", "forced_cut", "rounds")

    def __init__(self, rule: Rule, prepared: PreparedPrompt, *, keep_token_ids: bool = False) -> None:
        self.rule = rule
        self.prepared = prepared
        self.keep_token_ids = keep_token_ids
        self.stage = "new"
        self.pass1: Completion | None = None
        self.forced_text: str | None = None
        self.forced_cut = False
        self.rounds: list[Completion] = []  # pass 1's rounds under force_rethink (one otherwise)

    def start(self) -> Request:
        if self.stage != "new":
            raise RuntimeError(f"pair already started (stage {self.stage})")
        self.stage = "pass1"
        request = self.rule.pass1_request(self.prepared)
        if self.rule.config.answer_logprobs == "prefill":  # no logprobs while decoding: read after, at one position
            request = replace(request, top_logprobs=0)
        return request

    def advance(self, completion: Completion) -> Request | Judgement:
        if self.stage == "pass1":
            return self._after_pass1(completion)
        if self.stage == "answer_read":
            return self._after_answer_read(completion)
        if self.stage == "forced":
            return self._after_forced(completion)
        raise RuntimeError(f"no request of this pair is in flight (stage {self.stage})")

    def _common(self, comp: Completion) -> dict[str, Any]:
        return dict(
            reasoning=comp.text,
            prompt_tokens=self.prepared.prompt_tokens,
            output_tokens=comp.output_tokens,
            finish_reason=comp.finish_reason,
            truncated=self.prepared.truncated,
            stop_reason=comp.stop_reason,
            token_ids=comp.token_ids if self.keep_token_ids else None,
            rounds=tuple(
                {
                    "text": c.text,
                    "output_tokens": c.output_tokens,
                    "finish_reason": c.finish_reason,
                    "stop_reason": c.stop_reason,
                }
                for c in self.rounds
            )
            if self.rule.config.force_rethink
            else None,
        )

    def _next_round(self) -> Request | None:
        """force_rethink: the request that continues the reasoning after ``"\nWait"``, or None when no budget is left.

        The prompt is the pair's prompt, every round's text each followed by ``WAIT``; the round may generate
        what is left of the pair's generation budget (all rounds together stay within it) and of the context.
        The last forced round stops on the answer as usual."""
        cfg = self.rule.config
        prompt = self.prepared.prompt + "".join(c.text + WAIT for c in self.rounds)
        used = sum(c.output_tokens for c in self.rounds)
        n = len(self.rule.tokenizer(prompt).input_ids)
        left = min(cfg.generation_budget(self.prepared.prompt_tokens) - used, cfg.context_size - n)
        if left < 1:
            return None
        stop = STOP_STRINGS if len(self.rounds) == cfg.force_rethink else (THINK_END,)
        return Request(prompt, left, stop, cfg.top_logprobs)

    def _combined(self) -> Completion:
        """Pass 1 as one completion: the rounds' texts joined by ``WAIT``, their tokens, the last round's end."""
        if len(self.rounds) == 1:
            return self.rounds[0]
        last = self.rounds[-1]
        return Completion(
            text=WAIT.join(c.text for c in self.rounds),
            token_ids=tuple(t for c in self.rounds for t in c.token_ids),
            finish_reason=last.finish_reason,
            stop_reason=last.stop_reason,
            last_logprobs=last.last_logprobs,
            prompt_tokens=self.rounds[0].prompt_tokens,
        )

    def _after_pass1(self, comp: Completion) -> Request | Judgement:
        self.rounds.append(comp)
        closed = comp.finish_reason == "stop" and comp.stop_reason == THINK_END
        if closed and len(self.rounds) <= self.rule.config.force_rethink:
            following = self._next_round()
            if following is not None:
                return following
        comp = self._combined()
        self.pass1 = comp
        if self.rule.config.answer_logprobs == "prefill" and stopped_on_answer(comp, self.rule.answer):
            self.stage = "answer_read"
            return self.rule.answer_read_request(self.prepared.prompt, comp)
        return self._judge_pass1(comp)

    def _after_answer_read(self, read: Completion) -> Request | Judgement:
        """The answer position's top-k, read after pass 1: the rule goes on exactly as with streamed logprobs."""
        assert self.pass1 is not None
        self.pass1 = replace(self.pass1, last_logprobs=dict(read.last_logprobs))
        return self._judge_pass1(self.pass1)

    def _judge_pass1(self, comp: Completion) -> Request | Judgement:
        answered = pass1_answer(comp, self.rule.answer, self.rule.config.answer_rule)
        if answered is not None:
            self.stage = "done"
            return Judgement(
                score=score_from_logprobs(*answered),
                path="pass1",
                logprob_true=answered[0],
                logprob_false=answered[1],
                **self._common(comp),
            )
        self.stage = "forced"
        request, self.forced_text, self.forced_cut = self.rule.forced_request(self.prepared.prompt, comp.text)
        return request

    def _after_forced(self, comp: Completion) -> Judgement:
        assert self.pass1 is not None
        self.stage = "done"
        answer = self.rule.answer
        lps = {t: lp for t, lp in comp.last_logprobs.items() if t in (answer.true_id, answer.false_id)}
        common = {
            **self._common(self.pass1),
            "forced_reasoning": self.forced_text,
            "reasoning_cut": self.forced_cut,
        }
        answered = _answer_logprobs(lps, answer)
        if answered is None:
            error = f"forced answer gave no finite logprobs for both answer tokens (got {sorted(lps)})"
            return self.rule.failure(error, **common)
        return Judgement(
            score=score_from_logprobs(*answered),
            path="pass2",
            logprob_true=answered[0],
            logprob_false=answered[1],
            **common,
        )


def all_judged(results: Sequence[Judgement | None]) -> list[Judgement]:
    """The judgements in input order; a pair left without one is a lost request, never a shorter result list.

    Callers zip the result with their pairs: dropping a ``None`` would silently shift every later score onto the
    wrong pair, so any gap raises, naming the pairs."""
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (f" (+{len(missing) - 20} more)" if len(missing) > 20 else "")
        raise RuntimeError(f"{len(missing)} of {len(results)} pair(s) ended without a judgement: pair(s) {shown}")
    return [r for r in results if r is not None]


class Scorer:
    """The synchronous form of the rule: every pass-1 request in one engine call, then every forced answer."""

    def __init__(self, engine: Engine, config: ScoringConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ScoringConfig()
        self.rule = Rule(engine.tokenizer, self.config)
        self.answer = self.rule.answer

    def prepare(self, queries: Sequence[str], passages: Sequence[str]) -> list[PreparedPrompt]:
        return self.rule.prepare(queries, passages)

    def score(self, prepared: Sequence[PreparedPrompt], *, keep_token_ids: bool = False) -> list[Judgement]:
        """Judgements in input order; each stage of all pairs is one batch call to the engine."""
        states = [self.rule.pair(p, keep_token_ids=keep_token_ids) for p in prepared]
        results: list[Judgement | None] = [None] * len(states)
        todo = [(i, s.start()) for i, s in enumerate(states)]
        while todo:
            completions = run_requests(self.engine, [r for _, r in todo])
            following = []
            for (i, _), completion in zip(todo, completions, strict=True):
                out = states[i].advance(completion)
                if isinstance(out, Judgement):
                    results[i] = out
                else:
                    following.append((i, out))
            todo = following
        return all_judged(results)
