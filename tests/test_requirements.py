"""The dependency bounds in pyproject.toml match what the code calls (issue 9, item 6)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *project["optional-dependencies"]["vllm"]]
    return {m.group(1).lower(): m.group(2) for r in reqs if (m := re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", r))}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def test_mteb_is_the_tested_range_and_holds_the_installed_mteb():
    """A range, not a pin (issue 22): installing rank1_eval keeps a user's mteb when it is in the range; the
    range is the one rank1_eval/mteb_compat.py declares and README's "mteb versions" says was tested."""
    from packaging.specifiers import SpecifierSet

    from rank1_eval.mteb_compat import MTEB_FLOOR, MTEB_RANGE, TESTED

    spec = SpecifierSet(_requirements()["mteb"])
    assert spec == SpecifierSet(MTEB_RANGE)
    assert metadata.version("mteb") in spec and MTEB_FLOOR in spec and all(v in spec for v in TESTED)
    assert "3.0.0" not in spec and f">={MTEB_FLOOR}," in MTEB_RANGE


def test_floors_cover_the_apis_the_engines_call():
    reqs = _requirements()
    hf = (ROOT / "rank1_eval" / "engines" / "hf_engine.py").read_text()
    vllm = (ROOT / "rank1_eval" / "engines" / "vllm_engine.py").read_text()
    if re.search(r"from_pretrained\([^)]*\bdtype=", hf, re.S):  # `dtype=` replaced `torch_dtype=` in 4.56
        assert reqs["transformers"].startswith(">=") and _version(reqs["transformers"]) >= (4, 56)
    if "logprobs_mode" in vllm:  # LLM(logprobs_mode=...) arrived in vLLM 0.10; processed = final values in 0.10.2
        assert reqs["vllm"].startswith(">=") and _version(reqs["vllm"]) >= (0, 10, 2)
