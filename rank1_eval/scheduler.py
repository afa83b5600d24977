"""The streaming scheduler: keeps the engine's batch full and hands on each judgement the moment it is final.

rank1's reasoning lengths are heavy-tailed (most a few hundred tokens, some the whole budget), so synchronous
chunks — a chunk's pass 1, then its pass 2, then the next chunk — leave the engine's batch draining to the
chunk's longest generation. Instead the scheduler

* keeps ``engine.window`` requests submitted (vLLM: its running batch plus a waiting queue; servers: every
  request slot busy), refilling as requests finish, in the caller's order (query-grouped, for the prefix cache);
* submits a pair's forced answer the moment its pass 1 ends incomplete, with priority over pairs not started yet
  (``Request.priority``: vLLM schedules it ahead of its waiting queue), so it runs while pass 1's prompt blocks
  are still in the engine's prefix cache;
* calls ``on_final(index, judgement)`` as soon as a pair's judgement exists (the caller stores it at once), so a
  crash loses only the pairs in flight.

The rank1 rule itself is :class:`rank1_eval.scoring.PairState`; the engine knows nothing of true/false, and the
scheduler knows nothing of either beyond "a request finished, ask the pair what comes next". Results do not
depend on completion order: every pair's requests are the same as in the synchronous form.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from rank1_eval.engines.base import Engine, Request
from rank1_eval.records import Judgement
from rank1_eval.scoring import PairState, PreparedPrompt, Rule, all_judged

FOLLOW_UP, NEW_PAIR = 0, 1  # request priorities: a started pair's next request runs before pairs not started yet


@dataclass
class ScheduleStats:
    """What one ``run`` cost: requests, generated tokens and where the time went."""

    pairs: int = 0
    requests: int = 0
    forced: int = 0
    generated_tokens: int = 0  # pass-1 output tokens plus one per forced answer
    engine_s: float = 0.0  # inside the engine's submit/collect
    wall_s: float = 0.0
    peak_in_flight: int = 0

    @property
    def overhead_s(self) -> float:
        return max(0.0, self.wall_s - self.engine_s)


class Scheduler:
    """Streams the requests of many pairs through one engine (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        rule: Rule,
        *,
        window: int | None = None,
        keep_token_ids: bool = False,
        on_final: Callable[[int, Judgement], None] | None = None,
    ) -> None:
        self.engine = engine
        self.rule = rule
        self._window = window  # None: the engine's own, read at every step (a server's window follows its load)
        self.keep_token_ids = keep_token_ids
        self.on_final = on_final
        self.stats = ScheduleStats()

    @property
    def window(self) -> int:
        """Unfinished requests kept submitted: the given window, else the engine's at this moment."""
        return max(1, self._window or self.engine.window)

    def run(self, prepared: Sequence[PreparedPrompt]) -> list[Judgement]:
        """Judge every prompt; judgements in input order (each also passed to ``on_final`` when final)."""
        started = time.perf_counter()
        stats, engine = self.stats, self.engine
        results: list[Judgement | None] = [None] * len(prepared)
        waiting = deque(range(len(prepared)))
        states: dict[int, PairState] = {}
        in_flight: dict[int, int] = {}  # request id -> pair index
        next_id = 0
        try:
            while waiting or in_flight:
                batch: list[Request] = []
                window = self.window
                while waiting and len(in_flight) < window:
                    i = waiting.popleft()
                    state = self.rule.pair(prepared[i], keep_token_ids=self.keep_token_ids)
                    states[i] = state
                    request = replace(state.start(), id=next_id, priority=NEW_PAIR)
                    in_flight[next_id] = i
                    next_id += 1
                    batch.append(request)
                stats.peak_in_flight = max(stats.peak_in_flight, len(in_flight))
                t0 = time.perf_counter()
                if batch:
                    engine.submit(batch)
                    stats.requests += len(batch)
                done = engine.collect()
                stats.engine_s += time.perf_counter() - t0
                if not done:
                    raise RuntimeError(
                        f"engine {engine.kind} returned nothing with {len(in_flight)} request(s) in flight: "
                        f"request id(s) {_ids(in_flight)} (pairs {_ids(in_flight.values())}) were lost"
                    )
                following: list[Request] = []
                for rid, completion in done:
                    if rid not in in_flight:
                        raise RuntimeError(
                            f"engine {engine.kind} returned request id {rid!r}, which is not in flight (a duplicate "
                            f"or renamed request); in flight: {_ids(in_flight)}"
                        )
                    i = in_flight.pop(rid)
                    stats.generated_tokens += completion.output_tokens
                    out = states[i].advance(completion)
                    if isinstance(out, Judgement):
                        del states[i]
                        results[i] = out
                        stats.pairs += 1
                        if self.on_final is not None:
                            self.on_final(i, out)
                    else:  # the pair's next request goes in at once, ahead of any refill
                        request = replace(out, id=next_id, priority=FOLLOW_UP)
                        in_flight[next_id] = i
                        next_id += 1
                        following.append(request)
                        stats.forced += request.forced
                if following:
                    t0 = time.perf_counter()
                    engine.submit(following)
                    stats.engine_s += time.perf_counter() - t0
                    stats.requests += len(following)
        except BaseException:
            if in_flight:
                engine.cancel()
            raise
        finally:
            stats.wall_s += time.perf_counter() - started
        return all_judged(results)


def _ids(values: Iterable[int]) -> str:
    """Up to 20 ids for an error message, then how many more."""
    items = sorted(values)
    return ", ".join(map(str, items[:20])) + (f" (+{len(items) - 20} more)" if len(items) > 20 else "")
