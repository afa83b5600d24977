"""Paper table manifests, tables filled from result folders, rendering, and ``reproduce`` on the micro rank1."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import DEMO, MICRO_RANK1, session_engines

from rank1_eval import paper
from rank1_eval.cli import main
from rank1_eval.judge import Judge
from rank1_eval.paper import TableError, cell_runs, load_table, paper_table, table_from_results

# The paper's numbers as the paper (arXiv 2502.18418 v1) prints them, typed here independently of the manifests:
# table -> row key -> (values in the paper's column order, printed averages).
PAPER = {
    "bright": {
        "first-stage": ("53.6 53.6 24.3 38.6 18.8 22.7 25.9 19.3 17.7 3.9 18.9 20.2", "26.5"),
        "rank1-7b": ("48.8 36.7 20.8 35.0 22.0 18.7 36.2 12.7 31.2 6.3 23.7 37.8", "27.5"),
        "rank1-14b": ("49.3 37.7 22.6 35.2 22.5 20.8 33.6 17.7 33.2 8.4 22.5 41.4", "28.7"),
        "rank1-32b": ("49.7 35.8 22.0 37.5 22.5 21.7 35.0 18.8 32.5 10.8 22.9 43.7", "29.4"),
    },
    "nevir": {"rank1-7b": ("65.1", ""), "rank1-14b": ("67.5", ""), "rank1-32b": ("70.1", "")},
    # (Persian nDCG@20, p-MRR, Chinese ..., Russian ...), (avg nDCG@20, avg p-MRR)
    "mfollowir-crosslingual": {
        "rank1-7b": ("0.564 7.0 0.582 3.1 0.511 -0.0", "0.552 3.4"),
        "rank1-14b": ("0.572 11.9 0.611 4.6 0.516 5.4", "0.567 7.3"),
        "rank1-32b": ("0.555 3.9 0.598 4.9 0.521 6.6", "0.558 5.2"),
    },
    "mfollowir": {
        "rank1-7b": ("0.564 2.4 0.665 5.9 0.528 4.7", "0.586 4.4"),
        "rank1-14b": ("0.605 11.1 0.647 0.8 0.530 -1.0", "0.594 3.6"),
        "rank1-32b": ("0.619 12.1 0.678 10.2 0.535 8.1", "0.610 10.1"),
    },
    "dl19": {
        "rank1-7b": ("83.5 66.1 78.6", ""),
        "rank1-14b": ("82.3 64.8 77.6", ""),
        "rank1-32b": ("81.9 66.0 80.1", ""),
    },
    "beir": {
        "bm25s": ("47.2 18.6 32.0 25.4 34.3 16.5 69.1 34.7 68.8", "38.5"),
        "rank1-7b": ("42.8 15.0 38.9 39.5 36.2 17.2 77.2 22.8 81.9", "40.9"),
        "rank1-14b": ("45.3 16.2 37.4 37.9 35.8 17.9 77.0 27.1 78.2", "41.0"),
        "rank1-32b": ("57.6 15.8 40.7 41.8 36.9 19.6 76.8 19.9 81.9", "41.7"),
    },
    "awq": {
        "rank1-7b": ("15.2 77.2 65.1 48.8 58.2", ""),
        "rank1-7b-awq": ("5.6 75.4 62.0 42.8 56.3", ""),
        "rank1-llama3-8b": ("16.1 73.2 61.9 45.8 58.1", ""),
        "rank1-llama3-8b-awq": ("5.8 72.9 57.1 41.5 54.8", ""),
        "rank1-14b": ("29.6 77.0 67.5 49.3 61.1", ""),
        "rank1-14b-awq": ("10.0 75.6 66.4 44.6 58.8", ""),
        "rank1-mistral-24b": ("47.2 75.8 67.4 51.8 59.9", ""),
        "rank1-mistral-24b-awq": ("14.3 72.7 64.6 47.1 59.4", ""),
        "rank1-32b": ("65.5 76.8 70.1 49.7 59.8", ""),
        "rank1-32b-awq": ("19.3 77.2 69.9 52.3 59.7", ""),
    },
}
COLUMNS = {  # (task, subtask, split, metric, scale) per column, in the paper's order
    "bright": [
        ("BrightRetrieval", d, "standard", "ndcg_at_10", 100)
        for d in (
            "biology",
            "earth_science",
            "economics",
            "psychology",
            "robotics",
            "stackoverflow",
            "sustainable_living",
            "leetcode",
            "pony",
            "aops",
            "theoremqa_questions",
            "theoremqa_theorems",
        )
    ],
    "nevir": [("NevIR", None, "test", "paired_accuracy", 100)],
    "mfollowir-crosslingual": [
        ("mFollowIRCrossLingual", s, "test", m, scale)
        for s in ("eng-fas", "eng-zho", "eng-rus")
        for m, scale in (("og.ndcg_at_20", 1), ("p-MRR", 100))
    ],
    "mfollowir": [
        ("mFollowIR", s, "test", m, scale)
        for s in ("fas", "zho", "rus")
        for m, scale in (("og.ndcg_at_20", 1), ("p-MRR", 100))
    ],
    "dl19": [
        ("${DL19_DIR}", None, "test", "extra_qrels.main.Judged@10", 100),
        ("${DL19_DIR}", None, "test", "ndcg_at_10", 100),
        ("${DL19_DIR}", None, "test", "extra_qrels.rejudged.nDCG@10", 100),
    ],
    "beir": [
        (t, None, "test", "ndcg_at_10", 100)
        for t in (
            "ArguAna",
            "ClimateFEVER",
            "DBPedia",
            "FiQA2018",
            "NFCorpus",
            "SCIDOCS",
            "SciFact",
            "Touche2020",
            "TRECCOVID",
        )
    ],
    "awq": [
        (None, None, "test", None, 1),
        ("SciFact", None, "test", "ndcg_at_10", 100),
        ("NevIR", None, "test", "paired_accuracy", 100),
        ("BrightRetrieval", "biology", "standard", "ndcg_at_10", 100),
        ("mFollowIRCrossLingual", "eng-zho", "test", "og.ndcg_at_20", 100),
    ],
}
CHECKPOINTS = {
    "first-stage": None,
    "bm25s": None,
    "rank1-7b": "jhu-clsp/rank1-7b",
    "rank1-14b": "jhu-clsp/rank1-14b",
    "rank1-32b": "jhu-clsp/rank1-32b",
    "rank1-7b-awq": "jhu-clsp/rank1-7b-awq",
    "rank1-llama3-8b": "jhu-clsp/rank1-llama3-8b",
    "rank1-llama3-8b-awq": "jhu-clsp/rank1-llama3-8b-awq",
    "rank1-14b-awq": "jhu-clsp/rank1-14b-awq",
    "rank1-mistral-24b": "jhu-clsp/rank1-mistral-2501-24b",
    "rank1-mistral-24b-awq": "jhu-clsp/rank1-mistral-2501-24b-awq",
    "rank1-32b-awq": "jhu-clsp/rank1-32b-awq",
}


@pytest.mark.parametrize("name", list(PAPER))
def test_manifest_equals_spec_cell_by_cell(name):
    table = load_table(name)
    assert [r.key for r in table.rows] == list(PAPER[name])
    assert [(c.task, c.subtask, c.split, c.metric, c.scale) for c in table.columns] == COLUMNS[name]
    for row in table.rows:
        cells, averages = PAPER[name][row.key]
        expected = [float(v) for v in cells.split()]
        assert [row.paper.get(c.key) for c in table.columns] == expected, row.key
        assert [row.paper_averages[a.key] for a in table.averages] == [float(v) for v in averages.split()]
        assert row.checkpoint == CHECKPOINTS[row.key]
        assert row.first_stage == (row.checkpoint is None)
    # "−0.0" is printed with its sign and kept as a negative zero
    if name == "mfollowir-crosslingual":
        assert math.copysign(1, table.row("rank1-7b").paper["eng-rus-p-MRR"]) == -1


def test_every_table_runs_the_papers_first_stage():
    assert {c.run_file for c in load_table("bright").columns} == {"manifest"}
    assert {c.top_k for c in load_table("beir").columns} == {100}
    assert load_table("nevir").columns[0].run_file is None  # NevIR's own two candidates
    dl19 = load_table("dl19")
    assert {c.run_file for c in dl19.columns} == {"${DL19_RUN}"}
    assert dl19.columns[0].qrels == {"rejudged": "${DL19_REJUDGED}"}
    assert not load_table("awq").column("size_gb").reproducible


def test_numbers_and_files_are_aliases(tmp_path):
    for i, name in enumerate(paper.TABLE_NAMES, start=1):
        assert load_table(str(i)).name == name
    copy = tmp_path / "mine.json"
    shutil.copy(paper.tables_dir() / "nevir.json", copy)
    assert load_table(copy).name == "nevir"
    with pytest.raises(TableError, match="unknown table 'table9'.*bright \\(1\\)"):
        load_table("table9")


def test_bad_manifest_is_reported(tmp_path):
    obj = json.loads((paper.tables_dir() / "nevir.json").read_text())
    obj["rows"][0]["paper"]["nope"] = 1.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(obj))
    with pytest.raises(TableError, match="unknown columns \\['nope'\\]"):
        load_table(bad)


def test_runs_per_table():
    assert [r.columns for r in cell_runs(load_table("mfollowir"))] == [
        ["fas-ndcg_at_20", "fas-p-MRR"],
        ["zho-ndcg_at_20", "zho-p-MRR"],
        ["rus-ndcg_at_20", "rus-p-MRR"],
    ]
    assert len(cell_runs(load_table("bright"))) == 12
    assert len(cell_runs(load_table("beir"))) == 9
    assert [r.columns for r in cell_runs(load_table("awq"))] == [
        ["SciFact"],
        ["NevIR"],
        ["BRIGHT-biology"],
        ["mFollowIRCrossLingual-eng-zho"],
    ]
    with pytest.raises(TableError, match="DL19_DIR.*DL19_REJUDGED.*DL19_RUN.*--set"):
        cell_runs(load_table("dl19"))
    (run,) = cell_runs(load_table("dl19"), {"DL19_DIR": "/d/dl19", "DL19_RUN": "/d/r.trec", "DL19_REJUDGED": "/d/q"})
    assert (run.task, run.run_file, run.qrels, len(run.columns)) == ("/d/dl19", "/d/r.trec", {"rejudged": "/d/q"}, 3)


def test_paper_markdown(capsys):
    assert main(["table", "bright", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "| Model | Bio | Earth | Econ | Psy | Rob | Stack | Sus | Leet | Pony | AoPS | TheoQ | TheoT | Avg |" in out
    assert (
        "| Rank1-7B | 48.8 | 36.7 | 20.8 | 35.0 | 22.0 | 18.7 | 36.2 | 12.7 | 31.2 | 6.3 | 23.7 | 37.8 | 27.5 |" in out
    )
    assert "†" not in out  # BRIGHT's printed averages are the means of its cells
    main(["table", "beir", "--paper"])
    beir = capsys.readouterr().out
    assert "| 81.9 | 40.9† |" in beir and "| 68.8 | 38.5 |" in beir
    for printed, mean in (("40.9", "41.3"), ("41.0", "41.4"), ("41.7", "43.4")):
        assert f"printed {printed}, mean of cells {mean}" in beir
    main(["table", "3", "--paper"])
    assert "| Rank1-7B | 0.564 | +7.0 | 0.582 | +3.1 | 0.511 | -0.0 | 0.552 | +3.4 |" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------
# Tables from hand-made result folders
# ----------------------------------------------------------------------------------------------------


def _folder(
    root: Path,
    model: str,
    label: str,
    *,
    split="test",
    subset="default",
    metrics=None,
    extra=None,
    scores=None,
    limit=None,
    task_source="mteb",
) -> Path:
    """A result folder as the driver writes it, reduced to what the table reads."""
    folder = root / model / label
    folder.mkdir(parents=True)
    summary = {
        "task": label,
        "main_metric": "ndcg_at_10",
        "metrics": metrics or {},
        "provenance": {
            "split": split,
            "subset": subset,
            "top_k": 100,
            "limit_queries": limit,
            "task_source": task_source,
        },
        **(extra or {}),
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    if scores is not None:
        entry = {"hf_subset": subset, "languages": ["eng-Latn"], **scores}
        (folder / "mteb_result.json").write_text(json.dumps({"task_name": label, "scores": {split: [entry]}}))
    return folder


def _cells(row) -> dict[str, float | None]:
    return {k: (None if c.ours is None else round(c.ours, 6)) for k, c in row.cells.items()}


def test_bright_from_results_fills_exactly_those_cells(tmp_path):
    m = "jhu-clsp__rank1-7b"
    fs = {"vs_first_stage": {"metric": "ndcg_cut_10", "mean_a": 0.5, "mean_b": 0.6}}
    _folder(tmp_path, m, "BrightRetrieval_biology", split="standard", metrics={"ndcg_at_10": 0.5}, extra=fs)
    _folder(tmp_path, m, "BrightRetrieval_economics", split="standard", metrics={"ndcg_at_10": 0.2})
    _folder(tmp_path, m, "BrightRetrieval_pony", split="standard", metrics={"ndcg_at_10": 0.3})
    _folder(tmp_path, m, "BrightRetrieval_aops", split="test", metrics={"ndcg_at_10": 0.9})  # wrong split
    result = table_from_results("bright", tmp_path, "jhu-clsp/rank1-7b")
    first, ours = result.rows
    assert (first.key, ours.key) == ("first-stage", "rank1-7b")
    filled = {k: v for k, v in _cells(ours).items() if v is not None}
    assert filled == {"biology": 50.0, "economics": 20.0, "pony": 30.0}
    assert ours.cells["aops"].ours is None and "split 'test'" in ours.cells["aops"].note
    assert ours.cells["biology"].delta == pytest.approx(1.2)
    assert ours.cells["economics"].delta == pytest.approx(-0.8)
    assert ours.cells["pony"].delta == pytest.approx(-1.2)
    avg = ours.averages["avg"]
    assert (avg.ours, avg.n_ours, avg.n_total, avg.paper, avg.delta) == (pytest.approx(100 / 3), 3, 12, 27.5, None)
    # the first stage, as the reranked run recorded it
    assert {k: v for k, v in _cells(first).items() if v is not None} == {"biology": 60.0}
    assert first.cells["biology"].delta == pytest.approx(6.4)

    md = paper.render_markdown(result)
    assert "| Rank1-7B | paper | 48.8 | 36.7 |" in md
    assert "|  | ours | 50.0 | — | 20.0 | — | — | — | — | — | 30.0 | — | — | — | 33.3* (3/12) |" in md
    assert "|  | Δ | +1.2 | — | -0.8 | — | — | — | — | — | -1.2 | — | — | — | — |" in md
    assert "| 0.0 |" not in md  # missing is never zero


def test_complete_row_average_is_recomputed(tmp_path):
    domains = [c.key for c in load_table("bright").columns]
    values = [0.20 + 0.05 * i for i in range(12)]  # 20.0 ... 75.0: mean 47.5
    for d, v in zip(domains, values, strict=True):
        _folder(tmp_path, "jhu-clsp__rank1-14b", f"BrightRetrieval_{d}", split="standard", metrics={"ndcg_at_10": v})
    (row,) = [r for r in table_from_results("bright", tmp_path).rows if not r.first_stage]
    assert row.key == "rank1-14b"
    avg = row.averages["avg"]
    assert avg.complete and avg.ours == pytest.approx(47.5) and avg.delta == pytest.approx(47.5 - 28.7)
    assert row.cells["theoremqa_theorems"].ours == pytest.approx(75.0)


def test_missing_and_nested_metrics(tmp_path):
    m = "jhu-clsp__rank1-32b"
    # nDCG@20 of the original-instruction queries is nested in mteb's result; p-MRR is a top-level metric
    _folder(
        tmp_path,
        m,
        "mFollowIR_fas",
        subset="fas",
        metrics={"p-MRR": 0.05, "ndcg_at_20": 0.9},
        scores={"p-MRR": 0.05, "og": {"ndcg_at_20": 0.6}, "changed": {"ndcg_at_20": 0.5}},
    )
    zho = _folder(tmp_path, m, "mFollowIR_zho", subset="zho", metrics={"p-MRR": None})
    (zho / "mteb_result.json").write_text('{"scores": {"test": [{"hf_subset": "zho", "p-MRR": NaN}]}}')
    (row,) = [r for r in table_from_results("mfollowir", tmp_path, "jhu-clsp/rank1-32b").rows]
    assert _cells(row) == {
        "fas-ndcg_at_20": 0.6,
        "fas-p-MRR": 5.0,
        "zho-ndcg_at_20": None,
        "zho-p-MRR": None,
        "rus-ndcg_at_20": None,
        "rus-p-MRR": None,
    }
    assert row.cells["fas-ndcg_at_20"].delta == pytest.approx(0.6 - 0.619)
    assert row.cells["zho-p-MRR"].note == "p-MRR not in mFollowIR_zho"
    assert row.averages["avg-p-MRR"].n_ours == 1
    md = paper.render_markdown(result := table_from_results("mfollowir", tmp_path, "jhu-clsp/rank1-32b"))
    assert "|  | ours | 0.600 | +5.0 | — | — | — | — | 0.600* (1/3) | +5.0* (1/3) |" in md
    rows = list(csv.DictReader(io.StringIO(paper.render_csv(result))))
    zho_row = next(r for r in rows if r["column"] == "zho-p-MRR")
    assert zho_row["ours"] == "" and zho_row["paper"] == "10.2"


def test_dl19_local_folder_with_and_without_paths(tmp_path):
    extra = {"extra_qrels": {"main": {"Judged@10": 0.835}, "rejudged": {"nDCG@10": 0.786, "Judged@10": 1.0}}}
    _folder(
        tmp_path,
        "jhu-clsp__rank1-7b",
        "Dl19Local_default",
        metrics={"ndcg_at_10": 0.661},
        extra=extra,
        task_source="/data/dl19",
    )
    for subs in ({}, {"DL19_DIR": "/elsewhere/dl19"}):
        (row,) = table_from_results("dl19", tmp_path, "jhu-clsp/rank1-7b", placeholders=subs).rows
        assert _cells(row) == {"judged_at_10": 83.5, "ndcg_at_10-original": 66.1, "ndcg_at_10-rejudged": 78.6}
        assert all(abs(c.delta) < 1e-9 for c in row.cells.values())
    (row,) = table_from_results("dl19", tmp_path, "jhu-clsp/rank1-7b", placeholders={"DL19_DIR": "/x/trec"}).rows
    assert row.n_ours == 0  # a different folder name: nothing read


def test_model_outside_the_paper_and_errors(tmp_path):
    _folder(tmp_path, "local__micro", "NevIR_default", metrics={"paired_accuracy": 0.25})
    (row,) = table_from_results("nevir", tmp_path, "local__micro").rows
    assert (row.key, row.cells["nevir"].ours, row.cells["nevir"].paper) == ("ours", 25.0, None)
    (row,) = table_from_results("nevir", tmp_path, "local__micro", row="rank1-7b").rows
    assert row.cells["nevir"].delta == pytest.approx(25.0 - 65.1) and "Rank1-7B" in row.label
    with pytest.raises(TableError, match="no results for model 'jhu-clsp/rank1-7b'.*local__micro"):
        table_from_results("nevir", tmp_path, "jhu-clsp/rank1-7b")
    with pytest.raises(TableError, match="no result folders for any checkpoint"):
        table_from_results("nevir", tmp_path)


def test_table_cli_writes_every_format(tmp_path, capsys):
    _folder(tmp_path / "res", "jhu-clsp__rank1-7b", "NevIR_default", metrics={"paired_accuracy": 0.6})
    res, out_dir = str(tmp_path / "res"), str(tmp_path / "out")
    code = main(["table", "nevir", "--results", res, "--model", "jhu-clsp/rank1-7b", "--out", out_dir])
    assert code == 0
    out = capsys.readouterr().out
    assert "| Rank1-7B | paper | 65.1 |" in out and "|  | ours | 60.0 |" in out and "|  | Δ | -5.1 |" in out
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == [f"nevir__jhu-clsp__rank1-7b.{e}" for e in ("csv", "delta.png", "json", "md", "png", "tex")]
    tex = (tmp_path / "out" / "nevir__jhu-clsp__rank1-7b.tex").read_text()
    assert r"\begin{tabular}{llr}" in tex and r"& $\Delta$ & $-5.1$ \\" in tex
    png = (tmp_path / "out" / "nevir__jhu-clsp__rank1-7b.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert json.loads((tmp_path / "out" / "nevir__jhu-clsp__rank1-7b.json").read_text())["rows"][0]["cells"]["nevir"][
        "ours"
    ] == pytest.approx(60.0)
    assert main(["table", "nevir"]) == 2  # neither --results nor --paper: one clear line
    assert "--results DIR" in capsys.readouterr().err


def test_paper_table_renders_in_every_format():
    for name in paper.TABLE_NAMES:
        result = paper_table(name)
        assert paper.render_markdown(result).count("\n|") >= len(result.rows) + 1
        assert paper.render_latex(result).count(r"\\") == len(result.rows) + 1
        assert len(list(csv.DictReader(io.StringIO(paper.render_csv(result))))) == len(result.rows) * (
            len(result.table.columns) + len(result.table.averages)
        )


# ----------------------------------------------------------------------------------------------------
# reproduce: one model, several cells, on the micro rank1 (local tasks)
# ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_reproduce_runs_every_cell_with_one_model(tmp_path, monkeypatch):
    if not (MICRO_RANK1 / "model.safetensors").exists():
        pytest.skip("micro rank1 fixture not built")
    from rank1_eval.model import rank1

    for name in ("minia", "minib"):
        shutil.copytree(DEMO, tmp_path / name)
    manifest = {
        "name": "mini",
        "number": 0,
        "title": "two local tasks",
        "source": "test",
        "placeholders": {"ROOT": "folder holding minia/ and minib/"},
        "defaults": {
            "split": "test",
            "top_k": 20,
            "scale": 100,
            "decimals": 1,
            "run_file": str(DEMO / "bm25s_top20.trec"),
        },
        "columns": [
            {"key": "a", "label": "A", "task": "${ROOT}/minia", "metric": "ndcg_at_10"},
            {"key": "a-judged", "label": "A J@10", "task": "${ROOT}/minia", "metric": "extra_qrels.main.Judged@10"},
            {"key": "b", "label": "B", "task": "${ROOT}/minib", "metric": "ndcg_at_10"},
        ],
        "averages": [{"key": "avg", "label": "Avg", "of": ["a", "b"]}],
        "rows": [
            {"key": "bm25", "label": "BM25", "checkpoint": None, "first_stage": True, "paper": {"a": 70.0}},
            {
                "key": "micro",
                "label": "micro",
                "checkpoint": f"local/{MICRO_RANK1.name}",
                "paper": {"a": 50.0, "b": 40.0},
                "paper_averages": {"avg": 45.0},
            },
        ],
    }
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(manifest))
    loads = []
    original = Judge._load_engine
    monkeypatch.setattr(Judge, "_load_engine", lambda self: loads.append(1) or original(self))
    model = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        engine="transformers",
        context_size=1024,
        max_output_tokens=64,
    )
    try:
        rep = paper.reproduce(
            path,
            model,
            output_dir=tmp_path / "out",
            limit_queries=2,
            placeholders={"ROOT": str(tmp_path)},
            progress=False,
        )
    finally:
        model.close()
    assert rep.failures == {} and len(rep.summaries) == 2 and len(loads) == 1
    summaries = {Path(s["output_dir"]).parent.name: s for s in rep.summaries.values()}
    assert all(Path(s["output_dir"]).name.startswith("top20-first2-") for s in rep.summaries.values())
    assert set(summaries) == {"MiniaLocal_default", "MinibLocal_default"}
    first, micro = rep.result.rows
    a, b = summaries["MiniaLocal_default"], summaries["MinibLocal_default"]
    assert micro.cells["a"].ours == pytest.approx(100 * a["main_score"])
    assert micro.cells["b"].ours == pytest.approx(100 * b["main_score"])
    assert micro.cells["a-judged"].ours == pytest.approx(100 * a["extra_qrels"]["main"]["Judged@10"])
    assert micro.averages["avg"].ours == pytest.approx(50 * (a["main_score"] + b["main_score"]))
    assert first.cells["a"].ours == pytest.approx(100 * a["vs_first_stage"]["mean_b"])
    assert a["vs_first_stage"]["mean_a"] == pytest.approx(a["main_score"], abs=5e-6)  # pytrec_eval = mteb
    assert sorted(p.suffix for p in rep.files.values()) == [".csv", ".json", ".md", ".png", ".png", ".tex"]
    assert "partial run (--limit-queries 2)" in rep.files["md"].read_text()
    # the same table again from the folders alone: partial runs only when asked for
    again = table_from_results(
        path, tmp_path / "out", str(MICRO_RANK1), placeholders={"ROOT": str(tmp_path)}, allow_partial=True
    )
    assert [_cells(r) for r in again.rows] == [_cells(r) for r in rep.result.rows]
    refused = table_from_results(path, tmp_path / "out", str(MICRO_RANK1), placeholders={"ROOT": str(tmp_path)})
    cell = refused.rows[1].cells["a"]
    assert cell.ours is None and cell.note == "only partial runs (--limit-queries 2); pass --allow-partial to use them"
    md = paper.render_markdown(refused)
    assert "micro (all cells): only partial runs (--limit-queries 2); pass --allow-partial to use them" in md


def test_table_plots_share_one_axis_per_unit_and_show_deltas(tmp_path):
    from rank1_eval.paper.plots import axis_groups, delta_cells, plot_delta_png, plot_png

    for m, bio in (("jhu-clsp__rank1-7b", 0.500), ("jhu-clsp__rank1-14b", 0.480)):
        _folder(tmp_path, m, "BrightRetrieval_biology", split="standard", metrics={"ndcg_at_10": bio})
        _folder(tmp_path, m, "BrightRetrieval_earth_science", split="standard", metrics={"ndcg_at_10": 0.367})
    result = table_from_results("bright", tmp_path)
    assert list(axis_groups(result)) == [100]  # every BRIGHT cell is nDCG@10 x100: one shared axis
    assert list(axis_groups(paper_table("mfollowir-crosslingual"))) == [1, 100]  # nDCG@20 0-1 beside p-MRR x100
    rows, columns, values, scales = delta_cells(result)
    assert rows == ["Rank1-7B", "Rank1-14B"] and columns[:2] == ["Bio", "Earth"] and set(scales) == {100}
    assert values[0][0] == pytest.approx(50.0 - 48.8) and values[1][0] == pytest.approx(48.0 - 49.3)
    assert values[0][1] == pytest.approx(36.7 - 36.7, abs=1e-9) and values[1][1] == pytest.approx(36.7 - 37.7)
    assert values[0][2] is None and values[0][-1] is None  # no folder, and an average over missing cells: no Δ
    for draw, name in ((plot_png, "bars.png"), (plot_delta_png, "delta.png")):
        assert draw(result, tmp_path / name).read_bytes().startswith(b"\x89PNG")
    assert plot_png(paper_table("mfollowir-crosslingual"), tmp_path / "paper.png").is_file()


def test_per_domain_bright_folders_fill_bright_cells(tmp_path):
    m = "jhu-clsp__rank1-7b"
    _folder(tmp_path, m, "BrightBiologyRetrieval_default", split="standard", metrics={"ndcg_at_10": 0.5})
    _folder(tmp_path, m, "BrightRetrieval_pony", split="standard", metrics={"ndcg_at_10": 0.3})
    _folder(tmp_path, m, "BrightPonyRetrieval_default", split="standard", metrics={"ndcg_at_10": 0.9})
    (row,) = [r for r in table_from_results("bright", tmp_path, "jhu-clsp/rank1-7b").rows if not r.first_stage]
    assert row.cells["biology"].ours == pytest.approx(50.0)
    assert row.cells["biology"].note == "from BrightBiologyRetrieval_default"
    assert row.cells["pony"].ours == pytest.approx(30.0) and row.cells["pony"].note is None  # exact name first
    _folder(tmp_path, m, "BrightRetrieval_biology", split="standard", metrics={"ndcg_at_10": 0.25})
    (awq,) = [r for r in table_from_results("awq", tmp_path, "jhu-clsp/rank1-7b").rows]
    assert awq.cells["BRIGHT-biology"].ours == pytest.approx(25.0)


def _reproduce_args(tmp_path: Path, run_files_env: dict) -> list[str]:
    return [
        "--model",
        str(MICRO_RANK1),
        "--engine",
        "transformers",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--max-output-tokens",
        "16",
        "--context-size",
        "1024",
        "--top-k",
        "2",
        "--limit-queries",
        "1",
        "--data-root",
        run_files_env["hub"],
        "--output-dir",
        str(tmp_path),
        "--no-progress",
        "-q",
        *[x for name, path in run_files_env["dl19"].items() for x in ("--set", f"{name}={path}")],
    ]


@pytest.mark.slow
def test_reproduce_fills_every_cell_of_a_table(tmp_path, run_files_env, capsys, request, single_thread):
    """One table end to end from the Hub-shaped fixtures and the micro rank1: ``awq``, whose four cells are four
    dataset families (BEIR SciFact, NevIR, BRIGHT biology, mFollowIR cross-lingual); no reproducible cell
    missing. The other tables' cells are checked without judging in the test below."""
    with session_engines(request) as handed:
        assert main(["reproduce", "awq", *_reproduce_args(tmp_path, run_files_env)]) == 0, capsys.readouterr().err
    assert handed == ["hf_engine"]  # one model for every cell
    result = json.loads((tmp_path / "tables" / f"awq__local__{MICRO_RANK1.name}.json").read_text())
    table = load_table("awq")
    reproducible = {c.key for c in table.columns if c.reproducible and c.metric}
    ours = {r["key"]: r for r in result["rows"]}["ours"]["cells"]
    assert sorted(k for k in reproducible if ours[k]["ours"] is None) == []
    assert (len(reproducible), len(table.columns)) == (4, 5)  # awq's Size (GB) is printed, never measured
    capsys.readouterr()


@pytest.mark.slow
def test_every_cell_of_the_other_tables_loads_its_task_and_first_stage(run_files_env):
    """What ``reproduce`` does for each cell of the six other tables up to judging: the cell's task through mteb's
    own loader from the fixtures, its first-stage run file, the pairs (the judging, evaluation and table filling
    are the same code for every table: the test above, test_evaluate's family runs and the hand-made folders
    above cover them)."""
    from rank1_eval.evaluate import RunOptions, prepare
    from rank1_eval.paper.manifests import TABLE_NAMES
    from rank1_eval.paper.reproduction import _resolve_run_file

    dl19 = run_files_env["dl19"]
    loaded = {}
    for name in TABLE_NAMES:
        if name == "awq":
            continue
        table = load_table(name)
        runs = cell_runs(table, dl19)
        assert {c for r in runs for c in r.columns} == {c.key for c in table.columns if c.reproducible}, name
        for run in runs:
            opts = RunOptions(
                task=run.task,
                subtask=run.subtask,
                run_file=_resolve_run_file(run),
                top_k=2,
                split=run.split,
                data_root=run_files_env["hub"],
                qrels=run.qrels,
                limit_queries=1,
                output_dir=Path("unused"),
                progress=False,
            )
            prepared = prepare(opts, "local__micro")
            assert prepared.n_pairs >= 1, (name, run.task, run.subtask)
            loaded[name] = loaded.get(name, 0) + 1
    assert loaded == {"bright": 12, "nevir": 1, "mfollowir-crosslingual": 3, "mfollowir": 3, "dl19": 1, "beir": 9}
