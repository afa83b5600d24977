"""A CLI that answers at once: the light commands import neither mteb, torch nor vLLM; --version, -q/-v, help.

Import counts, not seconds: each light command runs in a fresh interpreter that reports which heavy packages
``sys.modules`` holds when it is done (timings are in ``benchmarks/bench_cli.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rank1_eval import __version__
from rank1_eval.cli import _log_level, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("mteb", "torch", "vllm")
PROBE = f"""
import json, sys
from rank1_eval.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("PROBE " + json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}), file=sys.stderr)
"""


def _probe(*argv: object) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, argv)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    line = next((x for x in proc.stderr.splitlines() if x.startswith("PROBE ")), None)
    assert line is not None, proc.stderr[-2000:]
    return json.loads(line[len("PROBE ") :]), proc.stdout


def _result_folder(root: Path, name: str, ranks: dict[str, int]) -> Path:
    """A result folder reduced to what compare and report read: run, qrels, traces, summary (1 relevant doc/query)."""
    folder = root / name
    folder.mkdir(parents=True)
    run, traces = [], []
    for qid, rank in ranks.items():
        docs = [f"{qid}-x", f"{qid}-y"]
        docs.insert(rank - 1, f"{qid}-rel")
        for i, d in enumerate(docs, start=1):
            run.append(f"{qid} Q0 {d} {i} {4 - i} test")
            traces.append(
                {
                    "qid": qid,
                    "docid": d,
                    "score": (4 - i) / 4,
                    "first_stage_rank": 4 - i,
                    "path": "pass1",
                    "output_tokens": 7,
                    "reasoning": "because",
                    "first_stage_score": float(i),
                }
            )
    (folder / "run.trec").write_text("\n".join(run) + "\n")
    (folder / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{q}-rel\t1\n" for q in ranks))
    summary = {
        "task": "T_default",
        "main_metric": "ndcg_at_10",
        "metrics": {"ndcg_at_10": 0.5},
        "provenance": {"task": "T", "subset": "default", "split": "test", "model": name},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("light")
    bright = root / "results" / "jhu-clsp__rank1-7b" / "BrightRetrieval_biology"
    bright.mkdir(parents=True)
    summary = {"metrics": {"ndcg_at_10": 0.5}, "provenance": {"split": "standard", "top_k": 100}}
    (bright / "summary.json").write_text(json.dumps(summary))
    return {
        "root": root,
        "a": _result_folder(root, "a", {"q1": 1, "q2": 1, "q3": 2}),
        "b": _result_folder(root, "b", {"q1": 2, "q2": 3, "q3": 1}),
    }


def test_light_commands_import_no_mteb_torch_or_vllm(folders):
    root, a, b = folders["root"], folders["a"], folders["b"]
    commands = {
        "--help": (["--help"], "COMMAND"),
        "--version": (["--version"], f"rank1-eval {__version__}"),
        "run --help": (["run", "--help"], "--max-output-tokens"),
        "reproduce --help": (["reproduce", "--help"], "--skip-existing"),
        "table --paper": (["table", "bright", "--paper"], "| Rank1-7B |"),
        "table --results": (
            ["table", "bright", "--results", root / "results", "--model", "jhu-clsp/rank1-7b", "--out", root / "t"],
            "|  | ours | 50.0 |",
        ),
        "compare": (["compare", a, b, "--no-per-query"], "wins/ties/losses (A vs B): 2/0/1"),
        "compare first stage": (["compare", a], "A vs B"),
        "report": (["report", a], str(a / "report.html")),
    }
    with ThreadPoolExecutor(3) as pool:  # fresh interpreters, mostly start-up: three at a time
        probes = dict(zip(commands, pool.map(lambda c: _probe(*c[0]), commands.values()), strict=True))
    for label, (_, expected) in commands.items():
        result, out = probes[label]
        assert result == {"code": 0, "heavy": []}, (label, result)
        assert expected in out, (label, out[-1500:])
    assert (root / "t" / "bright__jhu-clsp__rank1-7b.png").is_file()
    assert (a / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_python_dash_m_rank1_eval():
    proc = subprocess.run([sys.executable, "-m", "rank1_eval", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"rank1-eval {__version__}")
    proc = subprocess.run([sys.executable, "-m", "rank1_eval"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "COMMAND" in proc.stderr  # a subcommand is required, and said so


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"rank1-eval {__version__}"


def _subcommands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_subcommand_has_an_example_and_shows_its_defaults():
    helps = {name: p.format_help() for name, p in _subcommands().items()}
    assert set(helps) == {"run", "reproduce", "table", "compare", "report", "merge", "store", "export", "sweep"}
    for name, text in helps.items():
        assert f"example:\n  rank1-eval {name}" in text, name
    flat = {name: " ".join(text.split()) for name, text in helps.items()}
    assert "--top-k TOP_K first-stage candidates reranked per query (default: 100)" in flat["run"]
    assert "(default: 8192)" in flat["run"] and "(default: results)" in flat["run"]
    assert "(default: jhu-clsp/rank1-7b)" in flat["run"]  # written in the help text, not appended twice
    assert flat["run"].count("default: jhu-clsp/rank1-7b") == 1
    assert "--metric METRIC trec_eval measure or ndcg_at_10-style name (default: ndcg_cut_10)" in flat["compare"]
    assert "(default: 10000)" in flat["compare"]
    assert "--format {md,csv,tex,json,text} printed format (default: md)" in flat["table"]
    assert "--atol ATOL scores closer than this are the same judgement (default: 1e-05)" in flat["merge"]
    assert "--budgets B1,B2,... max_output_tokens values, each at most the run's" in flat["sweep"]
    assert "--force-rethink N" in flat["run"] and "--budgets B1,B2,..." in flat["run"]
    assert "(default: None)" not in " ".join(flat.values())  # unset options say nothing rather than "None"
    assert "(default: False)" not in " ".join(flat.values())


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["-q"], logging.ERROR),
        (["--quiet"], logging.ERROR),
    ],
)
def test_verbosity_before_or_after_the_subcommand(argv, level):
    parser = build_parser()
    before = parser.parse_args([*argv, "table", "bright", "--paper"])
    after = parser.parse_args(["table", "bright", "--paper", *argv])
    assert _log_level(before) == _log_level(after) == level


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["-q", "-v", "table", "bright", "--paper"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_verbose_logs_at_info(capsys, tmp_path):
    """-v reaches the logging setup of a real command (table reads a manifest, logs nothing above info)."""
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        assert main(["table", "bright", "--paper", "-v"]) == 0
        assert root.level == logging.INFO
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_table_picks_the_complete_run_and_where_narrows(tmp_path, capsys):
    """Runs of one task in the new layout: two complete runs of other prompt sets and a newer smoke run."""
    import os
    import time

    from rank1_eval.layout import run_folder, settings_hash

    def run(settings: dict, score: float, age: int) -> None:
        folder = run_folder(tmp_path, "jhu-clsp/rank1-7b", "BrightRetrieval_biology", settings)
        folder.mkdir(parents=True)
        summary = {
            "settings": settings,
            "settings_hash": settings_hash(settings),
            "metrics": {"ndcg_at_10": score},
            "provenance": {"split": "standard", "top_k": 100},
        }
        (folder / "summary.json").write_text(json.dumps(summary))
        os.utime(folder / "summary.json", (time.time() - 100 + age,) * 2)

    base = {
        "prompt_set": "code",
        "top_k": 100,
        "limit_queries": None,
        "split": "standard",
        "max_output_tokens": 8192,
        "dtype": "float16",
        "engine": "vllm",
    }
    run(base, 0.5, 1)
    run({**base, "prompt_set": "paper"}, 0.7, 2)
    run({**base, "limit_queries": 2}, 0.9, 3)  # newest, but partial
    argv = ["table", "bright", "--results", str(tmp_path), "--model", "jhu-clsp/rank1-7b"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "|  | ours | 70.0 |" in out and "2 runs differ in prompt_set; the newest is used" in out
    assert main([*argv, "--where", "prompt_set=code"]) == 0
    out = capsys.readouterr().out
    assert "|  | ours | 50.0 |" in out and "runs differ" not in out
    assert main([*argv, "--where", "limit_queries=2"]) == 0  # only the smoke run fits: refused, and said
    out = capsys.readouterr().out
    assert "|  | ours | — |" in out and "only partial runs (--limit-queries 2); pass --allow-partial" in out
    assert main([*argv, "--where", "limit_queries=2", "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "|  | ours | 90.0 |" in out and "partial run (--limit-queries 2)" in out


# ------------------------------------------------------------------------------------------ no silent overrides


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--max-output-tokens", "32", "--budgets", "8,64"], ["--max-output-tokens 32", "--budgets 8,64"]),
        (["--engine", "transformers", "--ngram-speculation", "4"], ["--ngram-speculation 4", "--engine transformers"]),
        (["--engine", "transformers", "--gpu-memory-utilization", "0.5"], ["--gpu-memory-utilization 0.5"]),
        (["--engine", "transformers", "--enforce-eager"], ["--enforce-eager", "--engine transformers"]),
        (["--engine", "transformers", "--max-concurrency", "2"], ["--max-concurrency 2", "server engines"]),
        (["--engine", "vllm", "--request-timeout", "5"], ["--request-timeout 5.0", "--engine vllm"]),
        (["--server-url", "http://127.0.0.1:9/v1", "--num-gpus", "2"], ["--num-gpus 2", "--server-url"]),
        (["--server-url", "http://127.0.0.1:9/v1", "--ngram-speculation", "3"], ["--ngram-speculation 3"]),
        (["--chunk-size", "8"], ["--chunk-size 8", "--scheduling stream"]),
        (["--skip-prompt", "--prompt-key", "SciFact"], ["--prompt-key SciFact", "--skip-prompt"]),
    ],
)
def test_a_flag_overridden_or_ignored_is_an_error_naming_both(argv, names, capsys, tmp_path):
    """Refused before anything loads (exit 2, one line): the run the user asked for is not the run they would get."""
    assert main(["run", *argv, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rank1-eval: error: ") and len(err.splitlines()) == 1, err
    for name in names:
        assert name in err
    assert not any(tmp_path.iterdir())


def test_a_meaningful_combination_is_a_recorded_warning():
    from rank1_eval.flags import check_flags, given_flags

    defaults = build_parser().parse_args(["run"])
    argv = ["run", "--engine", "transformers", "--max-output-tokens", "128", "--budgets", "8,64"]
    args = build_parser().parse_args(argv)
    warnings = check_flags(args, given_flags(args, defaults), budgets=[8, 64])
    assert warnings == [
        "--max-output-tokens 128 is above the largest of --budgets 8,64: the run is made at 128 "
        "and the budgets are derived below it"
    ]
    plain = build_parser().parse_args(["run", "--engine", "transformers"])
    assert check_flags(plain, given_flags(plain, defaults)) == []
