"""A scripted engine for pure-logic tests of the rank1 rule and the scheduler (real-engine tests live beside these)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from rank1_eval.engines.base import BatchCalls, EngineConfig, EngineLoad, Request
from rank1_eval.records import Completion

# a Hub commit for scripted models named like Hub ids ("fake/model"): their judgements need a model identity
FAKE_COMMIT = "f" * 40


class ScriptedEngine(BatchCalls):
    """Answers from functions of the prompt; records every submission so tests can check what the rule asked.

    ``finish`` decides which queued requests one ``collect`` finishes: all of them (default), or e.g. one at a
    time in a seeded random order (``shuffle_seed``) to test that results do not depend on completion order.
    """

    kind = "fake"

    def __init__(
        self,
        tokenizer: Any,
        complete_fn: Callable[[str], Completion],
        forced_fn: Callable[[str], dict[int, float]] | None = None,
        *,
        window: int = 1024,
        per_collect: int | None = None,
        shuffle_seed: int | None = None,
    ) -> None:
        self.config = EngineConfig(model="fake")
        self._tokenizer = tokenizer
        self.complete_fn = complete_fn
        self.forced_fn = forced_fn or (lambda prompt: {})
        self.complete_calls: list[list[str]] = []  # prompts of the pass-1 requests of each submission
        self.forced_calls: list[list[str]] = []
        self.requests: list[Request] = []
        self._window = window
        self.per_collect = per_collect
        self._rng = random.Random(shuffle_seed) if shuffle_seed is not None else None
        self.queued: list[Request] = []
        self.max_queued = 0
        self.cancelled = 0

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def window(self) -> int:
        return self._window

    def submit(self, requests: Sequence[Request]) -> None:
        gen = [r.prompt for r in requests if not r.forced]
        forced = [r.prompt for r in requests if r.forced]
        if gen:
            self.complete_calls.append(gen)
        if forced:
            self.forced_calls.append(forced)
        self.requests += requests
        self.queued += requests
        self.max_queued = max(self.max_queued, len(self.queued))

    def collect(self) -> list[tuple[int, Completion]]:
        if not self.queued:
            return []
        if self._rng is not None:
            self._rng.shuffle(self.queued)
        n = len(self.queued) if self.per_collect is None else self.per_collect
        batch, self.queued = self.queued[:n], self.queued[n:]
        return [(r.id, self._answer(r)) for r in batch]

    def _answer(self, r: Request) -> Completion:
        if not r.forced:
            return self.complete_fn(r.prompt)
        lps = {k: v for k, v in self.forced_fn(r.prompt).items() if k in (r.allowed_token_ids or ())}
        return Completion("", (next(iter(lps), 0),), "length", None, lps)

    def cancel(self) -> None:
        self.cancelled += len(self.queued)
        self.queued = []

    def load(self) -> EngineLoad | None:
        return EngineLoad(len(self.queued), 0, self._window)

    def info(self) -> dict[str, Any]:
        return {"engine": self.kind}

    def close(self) -> None:
        pass
