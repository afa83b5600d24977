"""The package as a user installs it: the wheel carries the zero-argument demo, and the README's Python runs as written.

One chain, end to end and offline: ``pip wheel --no-deps --no-build-isolation`` (nothing downloaded) of a copy
of the sources, a fresh venv that sees this machine's packages (``--system-site-packages``) with the wheel
installed ``--no-deps``, then, from a folder outside the checkout and with neither ``PYTHONPATH`` nor
``VLLM_ENABLE_V1_MULTIPROCESSING`` set: ``rank1-eval run`` (the demo), then every ```` ```python ```` block of
README.md in order, each in a fresh interpreter. No ``if __name__ == "__main__":`` guard is in those blocks:
on CPU rank1_eval keeps vLLM's engine core in the calling process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# what the zero-argument demo reads, and a few files every install needs
WHEEL_MUST_HOLD = [
    "rank1_eval/data/micro-rank1/model.safetensors",
    "rank1_eval/data/micro-rank1/tokenizer.json",
    "rank1_eval/data/micro-rank1/config.json",
    "rank1_eval/data/run_files/demo/dl19-mini/corpus.jsonl",
    "rank1_eval/data/run_files/demo/dl19-mini/queries.jsonl",
    "rank1_eval/data/run_files/demo/dl19-mini/qrels/test.tsv",
    "rank1_eval/data/run_files/demo/dl19-mini/bm25s_top20.trec",
    "rank1_eval/data/run_files/manifest.json",
    "rank1_eval/data/prompts/code.json",
    "rank1_eval/data/tables/bright.json",
    "rank1_eval/layout.py",
    "rank1_eval/cli/__init__.py",
    "rank1_eval/cli/__main__.py",
    "rank1_eval/cli/run.py",
    "rank1_eval/store/__init__.py",
    "rank1_eval/store/repair.py",
    "rank1_eval/paper/results.py",
    "rank1_eval/engines/vllm_engine.py",
]


def readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.M | re.S)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[:3]} exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv python, a working folder outside the checkout, the environment) with the built wheel installed."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"  # a copy: building in the checkout would leave build/ and *.egg-info there
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "rank1_eval", src / "rank1_eval", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VLLM_ENABLE_V1_MULTIPROCESSING")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
        cwd=tmp,
        env=env,
    )
    (wheel,) = (tmp / "dist").glob("rank1_eval-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in WHEEL_MUST_HOLD if n not in names]
    assert not missing, f"the wheel lacks {missing}"
    assert not [n for n in names if n.startswith("tests/")], "tests are not part of the package"
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--ignore-installed",
            "--no-index",
            str(wheel),
        ],
        cwd=tmp,
        env=env,
    )
    work = tmp / "work"
    work.mkdir()
    where = _run([str(python), "-c", "import rank1_eval; print(rank1_eval.__file__)"], cwd=work, env=env).stdout
    assert Path(where.strip()).is_relative_to(venv), f"imported {where.strip()}, not the installed wheel"
    return python, work, env


def test_wheel_demo_then_readme_python_blocks(installed):
    python, work, env = installed
    demo = _run([str(python.parent / "rank1-eval"), "run", "--no-progress"], cwd=work, env=env)
    assert "ndcg_at_10" in demo.stdout and "pairs 200: scored 200" in demo.stdout
    folder = Path(demo.stdout.split("results: ", 1)[1].split()[0])
    assert (work / folder / "summary.json").is_file() and "site-packages" not in str(folder)
    blocks = readme_python_blocks()
    assert len(blocks) == 2 and "rank1(" in blocks[0] and "load_traces" in blocks[1]
    assert all("__main__" not in b for b in blocks), "the README's CPU blocks run without a main guard"
    outputs = [_run([str(python), "-c", block], cwd=work, env=env) for block in blocks]
    first, second = outputs
    assert "Traceback" not in first.stderr + second.stderr
    assert "eng-Latn" in first.stdout and "131072" in first.stdout and "jhu-clsp/rank1-7b" in first.stdout
    assert "Dl19MiniLocal" in second.stdout or "local/micro-rank1" in second.stdout
    assert "1037798" in second.stdout  # the demo's first query id, read back as a string
