"""The dependency bounds in pyproject.toml match what the code calls (issue 9, item 6).

Each floor is tied to a call the code makes, found in rank1_eval's syntax tree (not by a regex over the text, so
a docstring or an info dict naming the API does not count). When the call goes away the test fails and says
so: the floor may then be lowered and the row dropped, but never silently stop being checked.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rank1_eval"


def _requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["vllm"]]
    return {m.group(1).lower(): m.group(2) for r in reqs if (m := re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", r))}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def _func_name(call: ast.Call) -> str | None:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg is not None}


def _from_pretrained_dtype(call: ast.Call) -> bool:
    return _func_name(call) == "from_pretrained" and "dtype" in _keywords(call)


def _logprobs_mode(call: ast.Call) -> bool:  # LLM(logprobs_mode=...) or the kwargs dict(...) handed to LLM
    return "logprobs_mode" in _keywords(call)


def call_sites(matches: Callable[[ast.Call], bool], root: Path = PACKAGE) -> list[str]:
    """``file:line`` of every call under ``root`` that ``matches`` accepts."""
    sites = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call) and matches(node):
                sites.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return sites


# (distribution, the API the code calls, the first version that has it as the code uses it, how to find a call)
FLOORS = [
    ("transformers", "from_pretrained(dtype=...)", (4, 56), _from_pretrained_dtype),  # torch_dtype= before 4.56
    ("vllm", "LLM(logprobs_mode=...)", (0, 10, 2), _logprobs_mode),  # the mode since 0.10; final values 0.10.2
]


def test_mteb_is_the_tested_range_and_holds_the_installed_mteb():
    """A range, not a pin (issue 22): installing rank1_eval keeps a user's mteb when it is in the range; the
    range is the one rank1_eval/mteb_compat.py declares and README's "mteb versions" says was tested."""
    from packaging.specifiers import SpecifierSet

    from rank1_eval.mteb_compat import MTEB_FLOOR, MTEB_RANGE, TESTED

    spec = SpecifierSet(_requirements()["mteb"])
    assert spec == SpecifierSet(MTEB_RANGE)
    assert metadata.version("mteb") in spec and MTEB_FLOOR in spec and all(v in spec for v in TESTED)
    assert "3.0.0" not in spec and f">={MTEB_FLOOR}," in MTEB_RANGE


@pytest.mark.parametrize(("dist", "api", "floor", "matches"), FLOORS, ids=[f[0] for f in FLOORS])
def test_floors_cover_the_apis_the_engines_call(dist, api, floor, matches):
    sites = call_sites(matches)
    assert sites, (
        f"rank1_eval no longer calls {api}: the {dist} floor was set for it; lower the floor if nothing else "
        "needs it and drop this row of FLOORS"
    )
    req = _requirements()[dist]
    assert req.startswith(">=") and _version(req) >= floor, (
        f"{', '.join(sites)} call {api}, which needs {dist} >= {'.'.join(map(str, floor))}; pyproject.toml says "
        f"{dist}{req}"
    )


def test_call_sites_finds_calls_and_ignores_text(tmp_path):
    """The finder itself: a real call counts, the same words in a docstring, a comment or a dict key do not."""
    (tmp_path / "m.py").write_text(
        '"""from_pretrained(dtype=x) and logprobs_mode="processed_logprobs" in prose."""\n'
        "# AutoModel.from_pretrained(path, dtype=torch.float32)\n"
        'info = {"logprobs_mode": "processed_logprobs"}\n'
        "model = AutoModel.from_pretrained(path, torch_dtype=dt)\n"
    )
    assert call_sites(_from_pretrained_dtype, tmp_path) == call_sites(_logprobs_mode, tmp_path) == []
    (tmp_path / "n.py").write_text("m = AutoModel.from_pretrained(p, dtype=dt)\nkw = dict(logprobs_mode='x')\n")
    assert len(call_sites(_from_pretrained_dtype, tmp_path)) == len(call_sites(_logprobs_mode, tmp_path)) == 1
