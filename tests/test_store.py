"""Tests for the judgement store: real SQLite files in tmp_path, real processes for crash and concurrency."""

from __future__ import annotations

import hashlib
import multiprocessing
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from rank1_eval.records import Judgement
from rank1_eval.store import (
    SCHEMA_VERSION,
    AsyncWriter,
    MemoryStore,
    MergeReport,
    SourceMergeCounts,
    SQLiteStore,
    Store,
    StoreConflictError,
    StoreError,
    StoreSchemaError,
    judgement_key,
    merge_stores,
)

FULL = Judgement(
    score=0.8734,
    reasoning="Die Passage erwähnt 東京 and the query 🦀 — «relevant».\n<think>ok</think>",
    path="pass2",
    prompt_tokens=512,
    output_tokens=1024,
    finish_reason="length",
    truncated=True,
    stop_reason=" true",
    logprob_true=-0.1357,
    logprob_false=-2.0625,
    forced_reasoning="cut here…",
    error="",
)
MINIMAL = Judgement(
    score=float("-inf"),
    reasoning="",
    path="failed",
    prompt_tokens=0,
    output_tokens=0,
    finish_reason="error",
    error="engine raised: CUDA OOM",
)


def judgement(i: int, *, score: float | None = None, path: str = "pass1") -> Judgement:
    return Judgement(
        score=i / 1000 if score is None else score,
        reasoning=f"reasoning for {i} ✓",
        path=path,  # type: ignore[arg-type]
        prompt_tokens=100 + i,
        output_tokens=i % 50,
        finish_reason="stop",
        stop_reason="</think>",
        logprob_true=-0.5,
        logprob_false=-1.5,
    )


def key(i: int) -> str:
    return judgement_key(model="jhu-clsp/rank1-7b", revision="abc", prompt=f"prompt {i}")


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "j.sqlite")
    yield s
    s.close()


# -------------------------------------------------------------------------------- keys


def test_judgement_key_is_sha256_of_canonical_json():
    expected = hashlib.sha256('{"a":null,"b":[1,"é"]}'.encode()).hexdigest()  # hand-written canonical form
    assert judgement_key(b=(1, "é"), a=None) == expected
    assert judgement_key(a=None, b=[1, "é"]) == judgement_key(b=(1, "é"), a=None)
    assert len(key(1)) == 64 and int(key(1), 16) >= 0


def test_judgement_key_changes_with_every_part():
    base = dict(model="m", revision="r", prompt="p", max_tokens=8192, engine="vllm", dtype="float16")
    k = judgement_key(**base)
    for name in base:
        changed = dict(base, **{name: str(base[name]) + "x"})
        assert judgement_key(**changed) != k, name
    assert judgement_key(**base, stop=["</think>"]) != k
    assert judgement_key(temperature=0) != judgement_key(temperature=0.0)


def test_judgement_key_rejects_empty_and_non_finite():
    with pytest.raises(ValueError):
        judgement_key()
    with pytest.raises(ValueError, match="finite"):
        judgement_key(temperature=float("nan"))
    with pytest.raises(TypeError):
        judgement_key(x=object())


# -------------------------------------------------------------------------------- both stores


def test_protocol(store):
    assert isinstance(store, Store)


def test_round_trip_all_fields(store):
    store.put_many([("k-full", FULL), ("k-min", MINIMAL)])
    got = store.get_many(["k-full", "k-min", "missing"])
    assert got == {"k-full": FULL, "k-min": MINIMAL}
    assert got["k-min"].logprob_true is None and got["k-min"].stop_reason is None
    assert got["k-full"].reasoning == FULL.reasoning


def test_get_many_missing_and_empty(store):
    assert store.get_many([]) == {}
    assert store.get_many(["nope"]) == {}
    store.put_many([])
    assert len(store) == 0
    with pytest.raises(TypeError):
        store.get_many("abc")


def test_insert_or_ignore_first_writer_wins(store):
    store.put_many([("k", judgement(1))])
    store.put_many([("k", judgement(2)), ("k2", judgement(3))])
    store.put_many([("k3", judgement(4)), ("k3", judgement(5))])  # duplicate within one batch
    assert store.get_many(["k", "k2", "k3"]) == {"k": judgement(1), "k2": judgement(3), "k3": judgement(4)}
    assert len(store) == 3


def test_many_keys_len_keys_contains(store):
    n = 2345
    store.put_many([(key(i), judgement(i)) for i in range(n)])
    wanted = [key(i) for i in range(0, n + 500)] + [key(0)]  # missing ones and a repeated one
    got = store.get_many(wanted)
    assert len(got) == n
    assert all(got[key(i)] == judgement(i) for i in range(n))
    assert len(store) == n
    assert list(store.keys()) == sorted(key(i) for i in range(n))
    assert dict(store.items()) == got
    assert key(7) in store and key(n + 1) not in store


def test_bad_items_rejected(store):
    with pytest.raises(TypeError, match="Judgement"):
        store.put_many([("k", FULL.to_dict())])
    with pytest.raises(TypeError, match="str"):
        store.put_many([(1, FULL)])
    with pytest.raises(TypeError, match="pairs"):
        store.put_many([FULL])
    assert len(store) == 0


def test_closed_store_raises(store):
    store.put_many([("k", FULL)])
    with store as s:
        assert s is store
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get_many(["k"])
    with pytest.raises(StoreError, match="closed"):
        store.put_many([("k", FULL)])


# -------------------------------------------------------------------------------- sqlite


def test_sqlite_persists_and_pragmas(tmp_path):
    path = tmp_path / "a" / "b" / "j.sqlite"  # parents are created
    with SQLiteStore(path) as s:
        s.put_many([("k", FULL)])
        conn = s._connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000
    with SQLiteStore(path, create=False) as s:
        assert s.get_many(["k"]) == {"k": FULL}
    raw = sqlite3.connect(path)
    version = raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION)
    value, created = raw.execute("SELECT value, created_at FROM judgements").fetchone()
    assert Judgement.from_dict(__import__("json").loads(value)) == FULL and created > 0
    raw.close()


def test_sqlite_usable_from_other_thread(tmp_path):
    with SQLiteStore(tmp_path / "j.sqlite") as s:
        t = threading.Thread(target=s.put_many, args=([("k", FULL)],))
        t.start()
        t.join()
        assert s.get_many(["k"]) == {"k": FULL}


def test_bad_paths(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a database, just some text that is long enough\n")
    with pytest.raises(StoreError, match="not a SQLite database"):
        SQLiteStore(text)
    assert text.read_text().startswith("this is not")  # untouched
    with pytest.raises(StoreError, match="directory"):
        SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match="cannot create the directory"):
        SQLiteStore(text / "sub" / "j.sqlite")
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()

    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE people (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a rank1_eval judgement store"):
        SQLiteStore(other)


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "j.sqlite"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    with pytest.raises(StoreSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SQLiteStore(path)


# -------------------------------------------------------------------------------- crash safety

# Real processes, forked: children inherit the imported modules (no multi-second ``import rank1_eval`` per
# child) and each opens its own SQLiteStore, exactly as separate worker processes would.
_FORK = multiprocessing.get_context("fork")
_KILL_CHUNK = 100


def _kill_writer(path: str, tag: str, committed) -> None:
    with SQLiteStore(path) as store:
        i = 0
        while True:
            store.put_many(
                [
                    (
                        f"{tag}-{n:08d}",
                        Judgement(
                            score=n / 7,
                            reasoning="r" * 2000 + str(n),
                            path="pass1",
                            prompt_tokens=n,
                            output_tokens=1,
                            finish_reason="stop",
                        ),
                    )
                    for n in range(i, i + _KILL_CHUNK)
                ]
            )
            i += _KILL_CHUNK
            committed.value = i


def test_sigkill_leaves_committed_chunks(tmp_path):
    path = tmp_path / "crash.sqlite"
    for round_, delay in enumerate([0.0, 0.013, 0.037]):
        committed = _FORK.Value("q", 0)
        proc = _FORK.Process(target=_kill_writer, args=(str(path), f"r{round_}", committed), daemon=True)
        proc.start()
        deadline = time.monotonic() + 30
        while committed.value < 3 * _KILL_CHUNK:  # a few commits happened, so the kill lands while writing
            assert proc.is_alive() and time.monotonic() < deadline, "writer process died or hangs"
            time.sleep(0.001)
        time.sleep(delay)
        proc.kill()  # SIGKILL
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL

        with SQLiteStore(path) as s:
            n = len(s)
            keys = list(s.keys())
            got = s.get_many(keys)
        assert n >= 3 * _KILL_CHUNK * (round_ + 1)
        assert n % _KILL_CHUNK == 0
        assert len(got) == n
        for k, j in got.items():
            i = int(k.split("-")[1])
            assert j.score == i / 7 and j.reasoning.endswith(str(i)) and j.prompt_tokens == i
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


# -------------------------------------------------------------------------------- concurrency


def _concurrent_writer(path: str, start: int, stop: int, go, errors) -> None:
    try:
        go.wait(10)
        with SQLiteStore(path) as s:
            for lo in range(start, stop, 20):
                s.put_many([(key(i), judgement(i)) for i in range(lo, min(lo + 20, stop))])
                s.get_many([key(i) for i in range(lo - 40, lo + 20)])
    except BaseException as exc:  # reported to the parent
        errors.put(repr(exc))
        raise


def test_two_processes_write_one_store(tmp_path):
    path = tmp_path / "shared" / "j.sqlite"  # neither process finds it: both race to create it
    go, errors = _FORK.Event(), _FORK.Queue()
    ranges = [(0, 1200), (600, 1800)]  # overlapping keys
    procs = [_FORK.Process(target=_concurrent_writer, args=(str(path), a, b, go, errors)) for a, b in ranges]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0], [errors.get() for _ in range(errors.qsize())]
    with SQLiteStore(path) as s:
        assert len(s) == 1800
        got = s.get_many([key(i) for i in range(1800)])
    assert got == {key(i): judgement(i) for i in range(1800)}


# -------------------------------------------------------------------------------- merge


def _make(path: Path, items: dict[str, Judgement]) -> Path:
    with SQLiteStore(path) as s:
        s.put_many(list(items.items()))
    return path


def _contents(path: Path) -> dict[str, Judgement]:
    with SQLiteStore(path) as s:
        return dict(s.items())


def test_merge_disjoint_and_duplicates(tmp_path):
    into = _make(tmp_path / "into.sqlite", {"a": judgement(1)})
    s1 = _make(tmp_path / "s1.sqlite", {"b": judgement(2), "c": judgement(3)})
    # "a" equal to into's value, "b" within atol of s1's value (first kept), "d" new
    s2 = _make(
        tmp_path / "s2.sqlite",
        {"a": judgement(1), "b": judgement(2, score=0.002 + 5e-6), "d": judgement(4)},
    )
    report = merge_stores(into, [s1, s2])
    assert isinstance(report, MergeReport)
    assert report.added == 3 and report.duplicates == 2
    assert report.per_source == (
        SourceMergeCounts(s1, read=2, added=2, duplicates=0),
        SourceMergeCounts(s2, read=3, added=1, duplicates=2),
    )
    assert _contents(into) == {"a": judgement(1), "b": judgement(2), "c": judgement(3), "d": judgement(4)}
    again = merge_stores(into, [s1, s2])  # idempotent
    assert again.added == 0 and again.duplicates == 5


def test_merge_many_rows_into_new_store(tmp_path):
    src = _make(tmp_path / "big.sqlite", {key(i): judgement(i) for i in range(1234)})
    report = merge_stores(tmp_path / "new" / "into.sqlite", [src])
    assert report.added == 1234 and report.duplicates == 0
    assert len(_contents(tmp_path / "new" / "into.sqlite")) == 1234


@pytest.mark.parametrize(
    "incoming",
    [judgement(2, score=0.002 + 1e-3), judgement(2, path="pass2")],
    ids=["score", "path"],
)
def test_merge_conflict_raises_and_leaves_target_unchanged(tmp_path, incoming):
    into = _make(tmp_path / "into.sqlite", {"a": judgement(1)})
    s1 = _make(tmp_path / "s1.sqlite", {"b": judgement(2), "e": judgement(5)})
    s2 = _make(tmp_path / "s2.sqlite", {"b": incoming, "c": judgement(3)})
    with pytest.raises(StoreConflictError) as info:
        merge_stores(into, [s1, s2])
    err = info.value
    assert err.key == "b" and err.existing == judgement(2) and err.incoming == incoming
    assert "b" in str(err) and repr(judgement(2).score) in str(err) and repr(incoming.score) in str(err)
    assert str(s2) in str(err)
    assert _contents(into) == {"a": judgement(1)}  # all or nothing


def test_merge_bad_sources(tmp_path):
    into = _make(tmp_path / "into.sqlite", {"a": judgement(1)})
    with pytest.raises(StoreError, match="does not exist"):
        merge_stores(into, [tmp_path / "missing.sqlite"])
    with pytest.raises(ValueError, match="itself"):
        merge_stores(into, [into])


# -------------------------------------------------------------------------------- writer


class _FailingStore(MemoryStore):
    def __init__(self, fail_after: int):
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after

    def put_many(self, items):
        self.calls += 1
        if self.calls > self.fail_after:
            raise OSError("disk full")
        super().put_many(items)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_async_writer_writes_in_background(tmp_path, kind):
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "j.sqlite")
    with AsyncWriter(store, max_pending=4) as writer:
        for lo in range(0, 1000, 50):
            writer.submit([(key(i), judgement(i)) for i in range(lo, lo + 50)])
        writer.flush()
        assert len(store) == 1000
        writer.submit([(key(2000), judgement(2000))])
    assert store.get_many([key(2000)]) == {key(2000): judgement(2000)}  # close() flushed
    with pytest.raises(StoreError, match="closed"):
        writer.submit([])
    store.close()


def test_async_writer_reraises_writer_exception():
    store = _FailingStore(fail_after=1)
    writer = AsyncWriter(store)
    writer.submit([("a", judgement(1))])
    writer.flush()
    writer.submit([("b", judgement(2))])
    with pytest.raises(OSError, match="disk full") as info:
        writer.close()
    assert any("background thread" in note for note in info.value.__notes__)
    with pytest.raises(OSError, match="disk full"):  # never swallowed, raised again
        writer.close()
    assert store.get_many(["a", "b"]) == {"a": judgement(1)}


def test_async_writer_context_manager_and_submit_after_failure():
    store = _FailingStore(fail_after=0)
    with pytest.raises(OSError, match="disk full"), AsyncWriter(store) as writer:
        writer.submit([("a", judgement(1))])
        with pytest.raises(OSError, match="disk full"):
            writer.flush()
        with pytest.raises(OSError, match="disk full"):
            writer.submit([("b", judgement(2))])
    with AsyncWriter(MemoryStore()) as ok, pytest.raises(TypeError):  # validated in the caller's thread
        ok.submit([("a", "not a judgement")])


def test_async_writer_batches_single_judgements_by_time(tmp_path):
    """A stream of one-judgement submissions: few transactions, yet each judgement durable within the interval."""
    store = SQLiteStore(tmp_path / "s.sqlite")
    writer = AsyncWriter(store, commit_interval=0.3)
    started = time.monotonic()
    for i in range(50):
        writer.submit([(key(i), judgement(i))])
    other = SQLiteStore(tmp_path / "s.sqlite")
    # not closed, not flushed: only the time-batched commits can make these durable; another connection sees
    # them as soon as they are (polled, not a fixed sleep), and within a few intervals even on a loaded machine
    while len(other.get_many([key(i) for i in range(50)])) < 50:
        assert time.monotonic() - started < 10, "the time-batched commits never made the judgements durable"
        time.sleep(0.02)
    other.close()
    assert 1 <= writer.commits <= 5
    writer.submit([(key(99), judgement(99))])
    started = time.monotonic()
    writer.flush()  # waits for the pending interval, no longer
    assert time.monotonic() - started < 1.0
    writer.close()
    assert writer.commits <= 6
    store.close()


# ------------------------------------------------------------------------------------------- one opener


@pytest.mark.parametrize("kind", ["empty", "other_app", "not_sqlite"])
def test_store_commands_refuse_the_same_files_alike(tmp_path, kind):
    """check, salvage and drop-failed open a store through one opener: the same refusal, and nothing written."""
    from rank1_eval.store import check_store, drop_failed, salvage_store

    path = tmp_path / "x.db"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_sqlite":
        path.write_text("hello, not a database\n")
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x)")
        conn.close()
    before = path.read_bytes()
    messages = set()
    for action in (
        lambda: check_store(path),
        lambda: salvage_store(path, tmp_path / "new.db"),
        lambda: drop_failed(path),
    ):
        with pytest.raises(StoreError) as info:
            action()
        messages.add(str(info.value))
    assert len(messages) == 1, messages
    assert path.read_bytes() == before and not (tmp_path / "new.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]


def test_store_check_leaves_no_wal_or_shm_files(tmp_path):
    from rank1_eval.store import check_store

    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        store.put_many([(judgement_key(i=i), judgement(i)) for i in range(3)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]
    result = check_store(path)
    assert result.ok and result.judgements == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_first_writer_wins_except_that_token_ids_may_be_added(tmp_path, kind):
    """`run --keep-token-ids` over judgements stored without ids re-decodes them: the store keeps the ids."""
    from dataclasses import replace

    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "s.sqlite")
    key, plain = judgement_key(i=1), judgement(1)
    store.put_many([(key, plain)])
    store.put_many([(key, replace(plain, score=0.01))])  # another value without ids: ignored
    assert store.get_many([key])[key] == plain
    with_ids = replace(plain, token_ids=(5, 6, 7))
    store.put_many([(key, with_ids)])
    assert store.get_many([key])[key] == with_ids
    store.put_many([(key, replace(plain, token_ids=(9,)))])  # ids never replace ids
    assert store.get_many([key])[key] == with_ids
    store.close()
