"""Result folders keyed by their settings, the one lookup readers use, and mteb's ResultCache layout.

Pure naming and choosing first (hand-made summaries, fast), then real runs of the micro rank1 through the driver:
two runs that differ never share a folder, the same settings resume into the same one, tables pick the complete
run, and ``mteb.ResultCache(out).load_results()`` / ``mteb.load_results`` read what the driver wrote.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import DEMO, MICRO_RANK1

from rank1_eval import layout
from rank1_eval.layout import (
    ResultsError,
    RunFolder,
    choose_run,
    list_runs,
    resolve_run_folder,
    run_folder,
    run_folder_name,
    run_tag,
    settings_hash,
)

BASE = {
    "model": "jhu-clsp/rank1-7b",
    "revision": None,
    "weights_fingerprint": None,
    "engine": "vllm",
    "dtype": "float16",
    "prompt_set": "code",
    "prompt_set_sha256": "ab" * 32,
    "dataset_prompt": None,
    "temperature": 0.0,
    "max_output_tokens": 8192,
    "context_size": 16000,
    "top_logprobs": 20,
    "stop": ["</think> true", "</think> false"],
    "skip_special_tokens": False,
    "failed_score": 0.5,
    "task": "NevIR",
    "subtask": None,
    "subset": "default",
    "split": "test",
    "dataset_revision": "r1",
    "first_stage": "default",
    "run_sha256": None,
    "top_k": 100,
    "limit_queries": None,
    "main_metric": None,
    "extra_qrels": {},
}

# ----------------------------------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("prompt_set", "paper"),
        ("prompt_set_sha256", "cd" * 32),
        ("dataset_prompt", False),
        ("top_k", 20),
        ("max_output_tokens", 4096),
        ("context_size", 8000),
        ("failed_score", "raise"),
        ("dtype", "bfloat16"),
        ("engine", "transformers"),
        ("limit_queries", 2),
        ("run_sha256", "ef" * 32),
        ("first_stage", "bm25"),
        ("revision", "abc123"),
        ("split", "dev"),
        ("dataset_revision", "r2"),
        ("main_metric", "map_at_100"),
        ("extra_qrels", {"rejudged": "12" * 32}),
        ("weights_fingerprint", "34" * 32),
    ],
)
def test_every_outcome_setting_changes_the_folder(key, value):
    other = {**BASE, key: value}
    assert settings_hash(other) != settings_hash(BASE)
    assert run_folder("out", "jhu-clsp/rank1-7b", "NevIR_default", other) != run_folder(
        "out", "jhu-clsp/rank1-7b", "NevIR_default", BASE
    )


def test_folder_names_are_readable_and_stable():
    shuffled = dict(reversed(list(BASE.items())))
    assert settings_hash(shuffled) == settings_hash(BASE) and len(settings_hash(BASE)) == 10
    assert run_folder_name(BASE) == f"top100-code-out8192-float16-vllm-{settings_hash(BASE)}"
    smoke = {**BASE, "limit_queries": 2, "dataset_prompt": False, "top_k": 20}
    assert run_folder_name(smoke).startswith("top20-first2-code-noprompt-out8192-float16-vllm-")
    path = run_folder("results", "jhu-clsp/rank1-7b", "NevIR_default", BASE)
    assert path.parts[:3] == ("results", "jhu-clsp__rank1-7b", "NevIR_default")


def test_run_tags_tell_runs_apart():
    tags = {
        run_tag("jhu-clsp/rank1-7b", "bm25s", 100, BASE),
        run_tag("jhu-clsp/rank1-14b", "bm25s", 100, BASE),
        run_tag("jhu-clsp/rank1-7b", "BrightRetrieval_biology_run", 100, BASE),
        run_tag("jhu-clsp/rank1-7b", "bm25s", 20, BASE),
        run_tag("jhu-clsp/rank1-7b", "bm25s", 100, {**BASE, "prompt_set": "paper"}),
    }
    assert len(tags) == 5 and all(" " not in t and "\t" not in t for t in tags)
    assert run_tag("jhu-clsp/rank1-7b", "bm25s", 100, BASE) == f"jhu-clsp__rank1-7b.bm25s.top100.{settings_hash(BASE)}"


# ----------------------------------------------------------------------------------------------------- choosing


def _run(task_dir: Path, settings: dict, *, age: float = 0.0, metric: float = 0.5) -> Path:
    folder = task_dir / run_folder_name(settings)
    folder.mkdir(parents=True)
    summary = {
        "settings": settings,
        "settings_hash": settings_hash(settings),
        "metrics": {"ndcg_at_10": metric},
        "provenance": {
            "split": settings["split"],
            "top_k": settings["top_k"],
            "limit_queries": settings["limit_queries"],
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    stamp = time.time() - 1000 + age
    os.utime(folder / "summary.json", (stamp, stamp))
    return folder


def test_complete_runs_win_and_partial_ones_need_asking(tmp_path):
    task = tmp_path / "NevIR_default"
    smoke = _run(task, {**BASE, "limit_queries": 2}, age=10)
    choice = choose_run(list_runs(task))
    assert choice.run is None
    assert choice.note == "only partial runs (--limit-queries 2); pass --allow-partial to use them"
    assert choose_run(list_runs(task), allow_partial=True).run.path == smoke
    with pytest.raises(ResultsError, match="only partial runs .*first2.*pass --allow-partial or the run folder"):
        resolve_run_folder(task)
    assert resolve_run_folder(task, allow_partial=True) == smoke
    assert resolve_run_folder(smoke) == smoke  # a run folder named explicitly is used as it is
    full = _run(task, BASE, age=1)  # older than the smoke run: complete still wins
    choice = choose_run(list_runs(task))
    assert choice.run.path == full and choice.note is None
    assert resolve_run_folder(task) == full


def test_several_complete_runs_the_newest_with_a_note_or_a_filter(tmp_path):
    task = tmp_path / "NevIR_default"
    code = _run(task, BASE, age=1)
    paper = _run(task, {**BASE, "prompt_set": "paper"}, age=2)
    k20 = _run(task, {**BASE, "top_k": 20}, age=3)
    choice = choose_run(list_runs(task), prefer={"top_k": 100})
    assert choice.run.path == paper
    assert choice.note.startswith("2 runs differ in prompt_set; the newest is used (top100-paper-")
    assert "--where KEY=VALUE" in choice.note
    assert choose_run(list_runs(task), prefer={"top_k": 100}, where={"prompt_set": "code"}).run.path == code
    assert choose_run(list_runs(task), where={"hash": settings_hash(BASE)[:4]}).run.path == code
    assert choose_run(list_runs(task), where={"top_k": "20"}).run.path == k20  # CLI values are strings
    only_k20 = choose_run([RunFolder.read(k20)], prefer={"top_k": 100})
    assert only_k20.run.path == k20 and only_k20.note == "top_k 20 (wanted 100)"
    with pytest.raises(ResultsError, match=r"holds 3 runs that differ in prompt_set, top_k \(top100-code-"):
        resolve_run_folder(task)
    assert resolve_run_folder(task, where={"top_k": "20"}) == k20


def test_older_layout_and_malformed_summaries(tmp_path):
    legacy = tmp_path / "jhu-clsp__rank1-7b" / "NevIR_default"
    legacy.mkdir(parents=True)
    prov = {"top_k": 100, "limit_queries": None, "split": "test", "prompt_set": "code"}
    (legacy / "summary.json").write_text(json.dumps({"provenance": prov}))
    (run,) = list_runs(legacy)
    assert run.path == legacy and not run.partial and run.settings["prompt_set"] == "code"
    assert resolve_run_folder(legacy) == legacy
    broken = tmp_path / "x" / "T_default" / "run-1"
    broken.mkdir(parents=True)
    (broken / "summary.json").write_text('{"settings": ')
    with pytest.raises(ResultsError, match=r"run-1/summary.json is truncated or not JSON.*rebuild it"):
        list_runs(broken.parent)
    (broken / "summary.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match="not a rank1_eval summary"):
        list_runs(broken.parent)
    with pytest.raises(ResultsError, match="no such folder"):
        resolve_run_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="is not a result folder .no summary.json in it or in a run folder"):
        resolve_run_folder(tmp_path / "empty")


def test_experiment_kwargs_are_the_settings_off_the_defaults():
    assert layout.experiment_kwargs(BASE, {}) == {}
    assert layout.experiment_kwargs({**BASE, "limit_queries": 2, "top_k": 20}, {"max_output_tokens": 64}) == {
        "max_output_tokens": 64,
        "limit_queries": 2,
        "top_k": 20,
    }


# ----------------------------------------------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, vllm_engine):  # the real-run tests below are end to end: marked slow
    """The micro rank1 (vLLM-CPU) through the driver on 3 demo queries x top 4: a 2-query smoke run, the full
    run, the full run again (resumed) and the full run with the paper's prompts, all in one output folder."""
    from rank1_eval import rank1
    from rank1_eval.evaluate import RunOptions, evaluate, prepare

    out = tmp_path_factory.mktemp("layout")
    task = tmp_path_factory.mktemp("task") / "dl19-three"
    task.mkdir()
    keep = [json.loads(line) for line in (DEMO / "queries.jsonl").open()][:3]
    (task / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in keep))
    (task / "corpus.jsonl").write_text((DEMO / "corpus.jsonl").read_text())
    (task / "qrels").mkdir()
    qids = {q["_id"] for q in keep}
    lines = (DEMO / "qrels" / "test.tsv").read_text().splitlines()
    (task / "qrels" / "test.tsv").write_text("".join(x + "\n" for x in lines if x.split("\t")[0] in qids))
    run_file = task / "bm25s_top20.trec"
    run_lines = (DEMO / "bm25s_top20.trec").read_text().splitlines()
    run_file.write_text("".join(x + "\n" for x in run_lines if x.split()[0] in qids))

    def run(limit: int | None = None, prompt_set: str = "code") -> dict:
        model = rank1(str(MICRO_RANK1), device="cpu", context_size=1024, max_output_tokens=64, prompt_set=prompt_set)
        model._engine = vllm_engine  # the session's engine: same settings (float32 on CPU, the API's default)
        opts = RunOptions(
            task=str(task), run_file=str(run_file), top_k=4, output_dir=out, limit_queries=limit, progress=False
        )
        return evaluate(model, prepare(opts), opts)

    results = {"smoke": run(limit=2), "full": run(), "again": run(), "paper": run(prompt_set="paper")}
    return out, results


@pytest.mark.slow
def test_runs_of_other_settings_never_share_a_folder(runs):
    out, r = runs
    folders = {k: Path(v["output_dir"]) for k, v in r.items()}
    assert folders["again"] == folders["full"], "the same settings resume into the same folder"
    assert len({folders["smoke"], folders["full"], folders["paper"]}) == 3
    assert folders["smoke"].parent == folders["full"].parent == folders["paper"].parent
    assert folders["smoke"].name.startswith("top4-first2-code-out64-float32-vllm-")
    assert folders["paper"].name.startswith("top4-paper-out64-float32-vllm-")
    assert r["again"]["pairs_scored"] == 0 and r["again"]["pairs_from_store"] == 12
    smoke = json.loads((folders["smoke"] / "summary.json").read_text())
    assert smoke["pairs_total"] == 8 and smoke["settings"]["limit_queries"] == 2  # not overwritten by the full run
    assert smoke["settings_hash"] == layout.settings_hash(smoke["settings"]) == folders["smoke"].name[-10:]
    # a table reads the complete runs only; --where picks among them
    choice = choose_run(list_runs(folders["full"].parent), where={"prompt_set": "code"})
    assert choice.run.path == folders["full"] and choice.note is None


@pytest.mark.slow
def test_run_trec_tag_and_trec_qrels_for_other_tools(runs):
    import ir_measures

    out, r = runs
    full, paper = Path(r["full"]["output_dir"]), Path(r["paper"]["output_dir"])
    tags = {line.split()[5] for folder in (full, paper) for line in (folder / "run.trec").read_text().splitlines()}
    assert len(tags) == 2 and all(t.startswith("local__micro-rank1.bm25s_top20.top4.") for t in tags)
    qrels = {(q.query_id, q.doc_id): q.relevance for q in ir_measures.read_trec_qrels(str(full / "qrels.trec"))}
    tsv = [line.split("\t") for line in (full / "qrels.tsv").read_text().splitlines()[1:]]
    assert qrels == {(q, d): int(rel) for q, d, rel in tsv} and len(qrels) > 10
    measured = ir_measures.calc_aggregate(
        [ir_measures.nDCG @ 10],
        ir_measures.read_trec_qrels(str(full / "qrels.trec")),
        ir_measures.read_trec_run(str(full / "run.trec")),
    )
    assert measured[ir_measures.nDCG @ 10] == pytest.approx(r["full"]["metrics"]["ndcg_at_10"], abs=5e-6)


@pytest.mark.slow
def test_mteb_result_cache_reads_every_run(runs):
    import mteb

    out, r = runs
    cache = mteb.ResultCache(out)
    assert cache.load_results().model_results == []  # default load: default settings only, none here
    loaded = cache.load_results(load_experiments="match_name")
    by_exp = {m.experiment_name: m for m in loaded.model_results}
    assert len(by_exp) == 3 and {m.model_name for m in loaded.model_results} == {"local/micro-rank1"}
    from mteb.models.model_meta import _serialize_experiment_kwargs_to_name  # how mteb names experiment folders

    for key in ("smoke", "full", "paper"):
        kwargs = r[key]["mteb"]["experiment_kwargs"]
        (task_result,) = by_exp[_serialize_experiment_kwargs_to_name(kwargs)].task_results
        assert task_result.get_score() == pytest.approx(r[key]["main_score"])
        assert Path(r[key]["mteb"]["result"]).is_file()
    assert r["smoke"]["mteb"]["experiment_kwargs"]["limit_queries"] == 2
    assert r["paper"]["mteb"]["experiment_kwargs"]["prompt_set"] == "paper"
    assert "limit_queries" not in r["full"]["mteb"]["experiment_kwargs"]


@pytest.mark.slow
def test_default_settings_land_where_plain_mteb_loads_look(runs, tmp_path, monkeypatch):
    """A run at rank1_eval's defaults has no experiment kwargs: its result sits in the plain revision folder,
    which ``ResultCache(...).load_results()`` and the deprecated ``mteb.load_results`` both read."""
    import mteb
    from mteb.results import TaskResult

    from rank1_eval import rank1

    out, r = runs
    model = rank1("jhu-clsp/rank1-7b", device="cpu")  # registered checkpoint, default settings
    assert model.experiment_kwargs() == {} and model.mteb_model_meta.experiment_kwargs is None
    assert layout.experiment_kwargs(BASE, model.experiment_kwargs()) == {}
    task_result = TaskResult.from_disk(Path(r["full"]["output_dir"]) / "mteb_result.json")
    path = layout.export_to_mteb(tmp_path, task_result, model.mteb_model_meta)
    plain = tmp_path / "results" / "jhu-clsp__rank1-7b" / "no_revision_available"
    assert path == plain / f"{task_result.task_name}.json"
    (result,) = mteb.ResultCache(tmp_path).load_results(models=["jhu-clsp/rank1-7b"]).model_results
    assert result.model_name == "jhu-clsp/rank1-7b" and result.experiment_name is None
    assert result.task_results[0].get_score() == pytest.approx(r["full"]["main_score"])
    meta = json.loads((path.parent / "model_meta.json").read_text())
    assert meta["name"] == "jhu-clsp/rank1-7b" and meta["languages"] == ["eng-Latn", "fas-Arab", "rus-Cyrl", "zho-Hans"]
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path))
    with pytest.warns(DeprecationWarning):
        legacy = mteb.load_results(download_latest=False, validate_and_filter=False)
    assert [m.model_name for m in legacy.model_results] == ["jhu-clsp/rank1-7b"]
    assert legacy.model_results[0].task_results[0].get_score() == pytest.approx(r["full"]["main_score"])


@pytest.mark.slow
def test_export_command_writes_another_root(runs, tmp_path, capsys):
    import mteb

    from rank1_eval.cli import main

    out, _ = runs
    assert main(["export", "--mteb", str(out), "--to", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "exported 2 run(s)" in printed  # the smoke run stays out unless --allow-partial
    loaded = mteb.ResultCache(tmp_path).load_results(load_experiments="match_name")
    assert len(loaded.model_results) == 2
    assert main(["export", "--mteb", str(out), "--to", str(tmp_path), "--allow-partial"]) == 0
    assert "exported 3 run(s)" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["{}", '{"task_name": "SciFact", "scores": {}}'])
def test_empty_or_foreign_summary_is_refused_by_every_reader(tmp_path, content):
    """`{}` or another tool's JSON in summary.json is not a result (it used to render a page titled "— ?")."""
    from rank1_eval.outputs import open_run

    folder = tmp_path / "m" / "T_default" / "run-1"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(content)
    for read in (lambda: open_run(folder), lambda: list_runs(folder.parent), lambda: resolve_run_folder(folder.parent)):
        with pytest.raises(ResultsError, match="is not a rank1_eval summary"):
            read()


def test_find_runs_refuses_an_empty_results_folder(tmp_path):
    from rank1_eval.layout import find_runs

    with pytest.raises(ResultsError, match="holds no rank1_eval result folder"):
        find_runs(tmp_path)
    (tmp_path / "m" / "T_default").mkdir(parents=True)
    with pytest.raises(ResultsError, match="holds no rank1_eval result folder"):
        find_runs(tmp_path)
    run = _run(tmp_path / "m" / "T_default", BASE)
    assert [r.path for r in find_runs(tmp_path)] == [run]


def test_a_task_folder_after_a_sweep_reads_as_its_measured_run(tmp_path):
    """The README's sweep leaves derived budget folders beside the run: readers pick the run they were cut from."""
    task = tmp_path / "T_default"
    measured = _run(task, BASE, age=1)
    for budget in (4, 8):
        derived = _run(task, {**BASE, "max_output_tokens": budget}, age=2 + budget)
        summary = json.loads((derived / "summary.json").read_text())
        (derived / "summary.json").write_text(json.dumps({**summary, "derived_from": str(measured)}))
    assert resolve_run_folder(task) == measured
