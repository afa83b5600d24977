"""Small immutable records that flow between the pipeline steps.

tasks + run files -> ``Pair`` -> prompt -> engine ``Completion`` -> ``Judgement`` -> store -> metrics.
They are frozen dataclasses so they can be hashed, shared between threads and serialized one line at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Path_ = Literal["pass1", "pass2", "failed"]


@dataclass(frozen=True)
class Pair:
    """One (query, document) pair to judge, with where it came from.

    ``query`` is the raw query text and ``instruction`` the separate instruction (mFollowIR/FollowIR); they are
    merged by :func:`rank1_eval.prompts.merge_instruction`, never here.
    """

    qid: str
    docid: str
    query: str
    doc: str
    instruction: str | None = None
    first_stage_rank: int | None = None
    first_stage_score: float | None = None


@dataclass(frozen=True)
class Completion:
    """What an engine returns for one greedy generation (engine-agnostic, no true/false semantics).

    ``text`` excludes the matched stop string (vLLM semantics) and keeps special tokens; ``token_ids`` are the
    generated ids *including* the stop string's tokens; ``last_logprobs`` maps token id -> logprob for the
    top-k candidates at the last generated position.
    """

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop" (stop string or EOS), "length"
    stop_reason: str | None  # the matched stop string, or None (EOS / budget)
    last_logprobs: dict[int, float] = field(default_factory=dict)
    prompt_tokens: int = 0

    @property
    def output_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class Judgement:
    """The rank1 verdict on one pair: the score plus everything needed to audit it.

    ``path`` says which rule produced the score: ``pass1`` (the model answered after reasoning), ``pass2``
    (forced answer after cutting the reasoning) or ``failed`` (no score could be computed; ``score`` then holds
    the value of the explicit failure policy and ``error`` says why).
    """

    score: float
    reasoning: str
    path: Path_
    prompt_tokens: int
    output_tokens: int
    finish_reason: str
    truncated: bool = False
    stop_reason: str | None = None
    logprob_true: float | None = None
    logprob_false: float | None = None
    forced_reasoning: str | None = None  # the cut text fed to pass 2
    error: str | None = None
    reasoning_cut: bool = False  # pass 2's reasoning was shortened by tokens so the forced prompt fits the context
    # pass 1's generated token ids, kept only on request (budget sweeps re-cut them); absent from stored JSON if None
    token_ids: tuple[int, ...] | None = None
    # force_rethink: each round of pass 1 ({text, output_tokens, finish_reason, stop_reason}); absent if None
    rounds: tuple[dict[str, Any], ...] | None = None
    # a budget sweep's judgement: the larger budget it was derived from (not decoded at its own); absent if None
    derived_from: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("token_ids", "rounds", "derived_from"):
            if data[name] is None:
                del data[name]
            elif isinstance(data[name], tuple | list):
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if fields.get("token_ids") is not None:
            fields["token_ids"] = tuple(fields["token_ids"])
        if fields.get("rounds") is not None:
            fields["rounds"] = tuple(dict(r) for r in fields["rounds"])
        return cls(**fields)


def decode_ids(tokenizer: Any, ids: Sequence[int]) -> str:
    """Token ids to text exactly as vLLM's detokenizer gives a ``Completion.text`` (SPEC §6.1).

    Special tokens are kept (``</think>`` must stay visible) and ``clean_up_tokenization_spaces`` is never
    applied: a tokenizer that enables it would rewrite ``" ."`` to ``"."`` (transformers 4.x; 5.x only with
    its BPE override), so text rebuilt from ids (Transformers engine, sweep, passage and reasoning cuts) would
    differ from the text a vLLM run saw, and with it the forced-answer prompt."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
