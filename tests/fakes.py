"""A scripted engine for pure-logic tests of the rank1 rule (real-engine tests live beside these)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rank1_eval.engines.base import EngineConfig
from rank1_eval.records import Completion


class ScriptedEngine:
    """Answers from functions of the prompt; records every call so tests can check what the rule asked."""

    kind = "fake"

    def __init__(
        self,
        tokenizer: Any,
        complete_fn: Callable[[str], Completion],
        forced_fn: Callable[[str], dict[int, float]] | None = None,
    ) -> None:
        self.config = EngineConfig(model="fake")
        self._tokenizer = tokenizer
        self.complete_fn = complete_fn
        self.forced_fn = forced_fn or (lambda prompt: {})
        self.complete_calls: list[list[str]] = []
        self.forced_calls: list[list[str]] = []

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def complete(self, prompts: Sequence[str], *, max_tokens: int, stop: Sequence[str], top_logprobs: int = 20):
        self.complete_calls.append(list(prompts))
        return [self.complete_fn(p) for p in prompts]

    def forced_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]):
        self.forced_calls.append(list(prompts))
        return [{k: v for k, v in self.forced_fn(p).items() if k in candidates} for p in prompts]

    def info(self) -> dict[str, Any]:
        return {"engine": self.kind}

    def close(self) -> None:
        pass
