"""Shard and merge: a stable split by judgement key, prompts identical to the mteb path, 3 shards + merge =
one unsharded run, and conflicting stores refused."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from conftest import DEMO, DEMO_MODEL_ARGS, MICRO_RANK1, QWEN25_TOKENIZER, only_run
from fakes import ScriptedEngine

from rank1_eval import rank1
from rank1_eval.cli import main
from rank1_eval.evaluate import RunOptions, evaluate, prepare
from rank1_eval.records import Completion, Judgement
from rank1_eval.shards import ShardError, in_shard, parse_shard, run_shard, task_prompts
from rank1_eval.store import SQLiteStore, merge_stores

T, F = 830, 895
RUN = DEMO / "bm25s_top20.trec"


def test_parse_shard():
    assert parse_shard("0/1") == (0, 1) and parse_shard("7/8") == (7, 8)
    for bad in ("1/1", "-1/3", "3", "a/b", "1/0", "1/2/3"):
        with pytest.raises(ShardError):
            parse_shard(bad)


def test_cli_rejects_bad_shard(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--shard", "3/3"])
    assert exc.value.code == 2 and "0 <= I < N" in capsys.readouterr().err


def test_shards_partition_keys_stably():
    rng = random.Random(0)
    keys = [f"{rng.getrandbits(256):064x}" for _ in range(3000)]
    for n in (1, 3, 8):
        owners = [[i for i in range(n) if in_shard(k, (i, n))] for k in keys]
        assert all(len(o) == 1 for o in owners), "every key in exactly one shard"
        sizes = [sum(o == [i] for o in owners) for i in range(n)]
        assert min(sizes) > 0.8 * len(keys) / n  # balanced
    assert [in_shard(k, (1, 3)) for k in keys] == [int(k[:16], 16) % 3 == 1 for k in keys]


# ------------------------------------------------------------------------------------------ scripted engine


@pytest.fixture
def beir_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A task with what makes prompts differ: titles (some empty), stray whitespace, instructions."""
    folder = tmp_path / "task"
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Cats", "text": "Cats purr. "},
        {"_id": "d2", "title": "", "text": "  Dogs bark.\n"},
        {"_id": "d3", "title": "Birds ", "text": "Birds sing and cats watch."},
        {"_id": "d4", "title": "", "text": "Fish swim."},
    ]
    queries = [
        {"_id": "q1", "text": "what do cats do", "instruction": "Only documents about cats are relevant."},
        {"_id": "q2", "text": " animals sounds ", "instruction": " Sounds only. "},
        {"_id": "q3", "text": "which animals", "instruction": "which animals"},  # equal: merged once
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\nq1\td3\t1\nq2\td2\t1\nq3\td4\t1\n")
    run = tmp_path / "run.trec"
    docs_ranked = enumerate(["d1", "d2", "d3", "d4"], start=1)
    lines = [f"{q} Q0 {d} {r} {10 - r} bm25" for r, d in docs_ranked for q in ("q1", "q2", "q3")]
    run.write_text("\n".join(lines) + "\n")
    return folder, run


def _scripted_model(tokenizer, scripted: bool = True) -> rank1:
    """A model on a folder holding only a tokenizer: a scripted engine, or none at all (loading would fail)."""

    def complete(prompt: str) -> Completion:
        p = (len(prompt) % 17 + 1) / 19  # any deterministic function of the whole prompt
        return Completion(" ok.", (1, T), "stop", "</think> true", {T: math.log(p), F: math.log(1 - p)})

    model = rank1(
        str(QWEN25_TOKENIZER),
        device="cpu",
        fp_options="float32",
        engine="transformers",
        context_size=1024,
        max_output_tokens=64,
    )
    if scripted:
        model._engine = ScriptedEngine(tokenizer, complete)
    return model


def _keys(path: Path) -> set[str]:
    with SQLiteStore(path, create=False) as store:
        return set(store.keys())


def test_shards_build_the_mteb_prompts_and_merge_to_a_full_run(qwen25_tokenizer, beir_folder, tmp_path):
    folder, run = beir_folder

    def opts(out: str, store: str | None = None) -> RunOptions:
        return RunOptions(
            task=str(folder),
            run_file=str(run),
            top_k=4,
            output_dir=tmp_path / out,
            store=tmp_path / store if store else None,
            progress=False,
        )

    name = f"local/{QWEN25_TOKENIZER.name}"
    full = _scripted_model(qwen25_tokenizer)
    summary = evaluate(full, prepare(opts("full"), name), opts("full"))
    assert summary["pairs_scored"] == 12
    mteb_keys = _keys(tmp_path / "full" / "store.sqlite")

    model = _scripted_model(qwen25_tokenizer)
    prepared = prepare(opts("shards"), name)
    assert {model.judgement_key(p.prompt) for p in task_prompts(model, prepared.task)} == mteb_keys

    reports = [run_shard(model, prepared, opts("shards"), (i, 3)) for i in range(3)]
    assert sum(r["pairs_in_shard"] for r in reports) == 12 and all(r["pairs_in_task"] == 12 for r in reports)
    stores = [Path(r["store"]) for r in reports]
    assert [s.name for s in stores] == [f"store.shard-{i}-of-3.sqlite" for i in range(3)]
    assert not (tmp_path / "shards" / f"local__{QWEN25_TOKENIZER.name}").exists(), "a shard run writes no outputs"
    assert set.union(*map(_keys, stores)) == mteb_keys and sum(map(len, map(_keys, stores))) == 12
    merge_stores(tmp_path / "merged.sqlite", stores)

    final = _scripted_model(qwen25_tokenizer, scripted=False)  # the weights are never needed
    again = evaluate(final, prepare(opts("final", "merged.sqlite"), name), opts("final", "merged.sqlite"))
    assert again["pairs_scored"] == 0 and again["pairs_from_store"] == 12
    assert final._engine is None and "engine_info" not in again["provenance"]
    assert again["metrics"] == summary["metrics"]


def _judgement(score: float) -> Judgement:
    return Judgement(score=score, reasoning="r", path="pass1", prompt_tokens=3, output_tokens=2, finish_reason="stop")


def test_merge_cli_and_conflicts(tmp_path, capsys):
    a, b, c = (tmp_path / f"{n}.sqlite" for n in "abc")
    with SQLiteStore(a) as s:
        s.put_many([("k1", _judgement(0.5)), ("k2", _judgement(0.25))])
    with SQLiteStore(b) as s:
        s.put_many([("k2", _judgement(0.25 + 1e-7)), ("k3", _judgement(0.75))])  # an equal duplicate
    with SQLiteStore(c) as s:
        s.put_many([("k1", _judgement(0.6))])  # a conflict
    assert main(["merge", "--into", str(tmp_path / "m.sqlite"), str(a), str(b)]) == 0
    assert "added 3, duplicates 1" in capsys.readouterr().out
    assert main(["merge", "--into", str(tmp_path / "m2.sqlite"), str(a), str(c)]) == 2
    err = capsys.readouterr().err
    assert "conflicting judgements for key k1" in err and "Traceback" not in err
    assert not (tmp_path / "m2.sqlite").exists() or _keys(tmp_path / "m2.sqlite") == set()
    assert main(["merge", "--into", str(a), str(a)]) == 2
    assert "into itself" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ real engine, CLI


def _base(out: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--task",
        str(DEMO),
        "--run-file",
        str(RUN),
        *DEMO_MODEL_ARGS,
        "--output-dir",
        str(out),
        "--limit-queries",
        "3",
        "--top-k",
        "20",
        "--no-progress",
        *extra,
    ]


def _outputs(out: Path):
    folder = only_run(out)
    traces = [json.loads(line) for line in (folder / "traces.jsonl").read_text().splitlines()]
    return traces, json.loads((folder / "summary.json").read_text()), folder


@pytest.mark.slow
def test_three_shards_and_merge_equal_one_run(tmp_path, capsys):
    if not (MICRO_RANK1 / "model.safetensors").exists():
        pytest.skip("micro rank1 fixture not built")
    shards = tmp_path / "shards"
    for i in range(3):
        assert main(_base(shards, "--shard", f"{i}/3")) == 0
        out = capsys.readouterr().out
        assert f"shard {i}/3" in out and "rank1-eval merge" in out
    assert not (shards / f"local__{MICRO_RANK1.name}").exists(), "shard runs write no outputs"
    stores = sorted(shards.glob("store.shard-*-of-3.sqlite"))
    assert len(stores) == 3 and all(len(_keys(s)) > 5 for s in stores)
    merged = tmp_path / "merged.sqlite"
    assert main(["merge", "--into", str(merged), *map(str, stores)]) == 0
    assert main(_base(shards, "--store", str(merged))) == 0
    assert "pairs 60: scored 0, from store 60" in capsys.readouterr().out
    assert "engine_info" not in _outputs(shards)[1]["provenance"], "the final run loads no weights"

    assert main(_base(tmp_path / "single")) == 0
    (t1, s1, f1), (t2, s2, f2) = _outputs(shards), _outputs(tmp_path / "single")
    assert s1["pairs_scored"] == 0 and s2["pairs_scored"] == 60
    assert [(a["qid"], a["docid"], a["path"], a["reasoning"]) for a in t1] == [
        (b["qid"], b["docid"], b["path"], b["reasoning"]) for b in t2
    ]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(t1, t2, strict=True)) <= 1e-5
    assert s1["metrics"] == pytest.approx(s2["metrics"], abs=1e-5)
    p1, p2 = (json.loads((f / "predictions.json").read_text()) for f in (f1, f2))
    assert {q: list(d) for q, d in p1.items()} == {q: list(d) for q, d in p2.items()}  # same ranking
