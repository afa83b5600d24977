"""The README's first hour, as written: its demo commands and Python blocks, in the README's order, in a fresh
folder, each one working after the ones before it (issue 20).

The commands are read from the README itself (fenced ``bash`` and ``python`` blocks): every ``rank1-eval``
command that runs on the bundled demo (no Hub checkpoint, no server, no other task) and every Python block.
Then the readers the README describes run on the demo's task folder, which by then holds the run and the
sweep's budget folders: ``load_traces``, ``report``, ``compare``, ``export``, ``store check``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_fork_server import ForkServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOT_ON_THE_DEMO = re.compile(r"jhu-clsp|--task|--server-url|reproduce|shard|table ")
TASK_FOLDER = "results/local__micro-rank1/Dl19MiniLocal_default"


def readme_steps(text: str) -> list[tuple[str, str]]:
    """``("sh", command)`` and ``("py", code)`` in the README's order: the steps a new user can run on a CPU."""
    steps: list[tuple[str, str]] = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang == "python":
            steps.append(("py", body))
        elif lang == "bash":
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():  # a continued line is one command
                for command in line.split("&&"):
                    command = command.split("#", 1)[0].strip()
                    if command.startswith("rank1-eval") and not NOT_ON_THE_DEMO.search(command):
                        steps.append(("sh", command))
    return steps


def test_the_readme_names_the_demo_path():
    """The steps the slow test runs: if the README loses one, this says which."""
    steps = readme_steps(README.read_text(encoding="utf-8"))
    shell = [s for kind, s in steps if kind == "sh"]
    assert shell[0] == "rank1-eval run"
    assert "rank1-eval run --keep-token-ids" in shell
    assert f"rank1-eval sweep {TASK_FOLDER} --budgets 4,8,16,32" in shell
    assert sum(kind == "py" for kind, _ in steps) >= 2
    assert any("load_traces" in s for kind, s in steps if kind == "py")


def _run(kind: str, step: str, cwd: Path, env: dict[str, str], forks: ForkServer) -> subprocess.CompletedProcess[str]:
    """One step as written, each in its own process: ``rank1-eval`` is this checkout's ``python -m rank1_eval``
    (a fork of a process that imported mteb and torch once); a Python block is a fresh ``python -c``, so what
    its imports print is what a user sees."""
    if kind == "py":
        argv = [sys.executable, "-c", step]
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    args = shlex.split(step)[1:]
    p = forks.run(args, cwd=cwd, env=env, timeout=1200, module="rank1_eval")
    assert not p.timed_out, f"{step} did not end within 1200 s"
    return subprocess.CompletedProcess(["rank1-eval", *args], p.rc, p.out, p.err)


@pytest.mark.slow
def test_the_first_hour_works_as_written(tmp_path, request):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    steps = readme_steps(README.read_text(encoding="utf-8"))
    steps += [  # the readers the README describes, on the demo's task folder (run + the sweep's budget folders)
        ("py", f"from rank1_eval import load_traces\nprint(len(load_traces({TASK_FOLDER!r})))"),
        ("sh", f"rank1-eval report {TASK_FOLDER}"),
        ("sh", f"rank1-eval compare {TASK_FOLDER} --no-per-query"),
        ("sh", "rank1-eval export results --to mteb-cache"),
        ("sh", "rank1-eval store check results/store.sqlite"),
    ]
    # a fresh clone's root: the README's paths into the checkout's bundled data (e.g. the micro CrossEncoder) resolve
    # there (a folder without __init__.py: the installed package still wins the import)
    (tmp_path / "rank1_eval").mkdir()
    (tmp_path / "rank1_eval" / "data").symlink_to(ROOT / "rank1_eval" / "data", target_is_directory=True)
    seen = []
    (tmp_path / "fork-server").mkdir()
    forks = ForkServer(ROOT, env, tmp_path / "fork-server")
    request.addfinalizer(forks.close)
    for kind, step in steps:
        proc = _run(kind, step, tmp_path, env, forks)
        seen.append(step.splitlines()[0])
        assert proc.returncode == 0, f"step {len(seen)} ({seen[-1]}) after {seen[:-1]}:\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        if kind == "py":  # library logs stay out of a script's stdout, as in the CLI
            assert not re.search(r"^\(?\w*\s*(pid=\d+\)\s*)?(INFO|WARNING|DEBUG) ", proc.stdout, re.M), proc.stdout
        if step.startswith("rank1-eval run"):
            assert "main:Judged@10" not in proc.stdout and "DEBUG" not in proc.stderr
        if step == "rank1-eval run --keep-token-ids":  # the demo's judgements had no token ids: decoded again
            assert re.search(r"scored 200, from store 0", proc.stdout), proc.stdout
    folder = next(p for p in (tmp_path / TASK_FOLDER).iterdir() if (p / "sweep.json").is_file())
    sweep = json.loads((folder / "sweep.json").read_text())
    derived = [r for r in sweep["budgets"] if "sweep_run" in r]
    assert [r["budget"] for r in derived] == [4, 8, 16, 32]
    assert all(r["source"] == "derived" and r["sweep_run"] == 0 for r in derived), derived  # none judged for real
    assert (folder / "report.html").is_file() and (tmp_path / "mteb-cache" / "results").is_dir()
