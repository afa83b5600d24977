"""Every dataset family of the paper loaded through mteb's own task classes from Hub-shaped local copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import mteb
import pytest

from rank1_eval.tasks import BEIR_TASKS, TaskError, load_task

PAPER_BEIR = (
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
FAMILIES = [
    ("BrightRetrieval", "biology"),  # v1 loader, 12 domains, converted by mteb's convert_v1_dataset_format_to_v2
    ("BrightRetrieval", "theoremqa_questions"),
    ("BrightBiologyRetrieval", None),  # v1.1 loader without exclusions: no top_ranked
    ("BrightLeetcodeRetrieval", None),  # v1.1 with excluded_ids: top_ranked = corpus minus them
    ("BrightPonyLongRetrieval", None),  # v1.1 long documents
    ("mFollowIR", "fas"),
    ("mFollowIRCrossLingual", "eng-zho"),
    ("NevIR", None),
    ("SciFact", None),  # a judged query without candidates in the run file
    ("ArguAna", None),  # ignore_identical_ids
    ("NFCorpus", None),  # a query judged only with grade 0; the other BEIR copies load in test_paper's reproduce
]


@pytest.mark.parametrize(("name", "subtask"), FAMILIES, ids=[f"{n}-{s}" if s else n for n, s in FAMILIES])
def test_family_loads_through_the_mteb_class(hub_fixtures, name, subtask):
    task = load_task(name, subtask, data_root=hub_fixtures["hub"])
    assert type(task.task) is type(mteb.get_task(name))  # mteb's own class and loader, nothing re-implemented
    assert list(task.task.dataset) == [task.subset]  # v2 shape, only the chosen subset loaded
    data = task.data
    assert set(data["queries"].column_names) >= {"id", "text"}
    assert set(data["corpus"].column_names) >= {"id", "text"}
    assert data["queries"]["id"] and data["corpus"]["id"]
    assert task.eval_qrels() and set(task.eval_qrels()) <= set(task.query_ids())
    assert task.dataset_path == str(Path(hub_fixtures["hub"]) / mteb.get_task(name).metadata.dataset["path"])
    assert task.dataset_revision.startswith("local-")  # the copy's fingerprint, for provenance
    if name.startswith("mFollowIR"):
        assert "instruction" in data["queries"].column_names
        assert all(q.endswith(("-og", "-changed")) for q in task.query_ids())
        assert data["top_ranked"]  # mteb's own candidates
    if name == "NevIR":
        assert all(len(docs) == 2 for docs in data["top_ranked"].values())
    assert task.eval_rules.ignore_identical_ids == (name == "ArguAna")
    if name == "NFCorpus":
        assert any(set(grades.values()) == {0} for grades in task.eval_qrels().values())  # evaluated, nDCG 0


def test_bright_v1_reads_all_twelve_domains_unless_narrowed(hub_fixtures):
    """mteb's BrightRetrieval loader reads every domain: the fixture has all 12; we load just the one asked for."""
    task = mteb.get_task("BrightRetrieval")
    local = str(Path(hub_fixtures["hub"]) / "xlangai" / "BRIGHT")
    task.metadata = task.metadata.model_copy(update={"dataset": {"path": local, "revision": "local"}})
    task.load_data()
    task.convert_v1_dataset_format_to_v2(num_proc=None)
    assert len(task.dataset) == 12 and all(task.dataset[d]["standard"]["queries"]["id"] for d in task.dataset)
    narrowed = load_task("BrightRetrieval", "pony", data_root=hub_fixtures["hub"])
    assert list(narrowed.task.dataset) == ["pony"]
    assert narrowed.corpus_ids() == list(task.dataset["pony"]["standard"]["corpus"]["id"])


def test_bright_v1_1_exclusions_come_from_mtebs_loader(hub_fixtures):
    import pandas as pd

    bright = Path(hub_fixtures["hub"]) / "mteb" / "BRIGHT"
    examples = pd.read_parquet(bright / "examples" / "aops-00000-of-00001.parquet")
    expected = {row["id"]: frozenset(row["excluded_ids"]) for _, row in examples.iterrows()}
    task = load_task("BrightAopsRetrieval", data_root=hub_fixtures["hub"])
    assert task.excluded == expected and all(expected.values())
    assert load_task("BrightBiologyRetrieval", data_root=hub_fixtures["hub"]).excluded == {}  # ["N/A"]: none
    assert load_task("BrightRetrieval", "aops", data_root=hub_fixtures["hub"]).excluded == {}  # v1 ignores them


def test_limit_queries_keeps_groups_whole(hub_fixtures):
    nevir = load_task("NevIR", data_root=hub_fixtures["hub"])
    assert nevir.limit_queries(3) == 4
    assert nevir.query_ids() == ["1000-2_q1", "1000-2_q2", "1001-2_q1", "1001-2_q2"]
    assert sorted(nevir.qrels) == nevir.query_ids() and sorted(nevir.top_ranked) == nevir.query_ids()
    nevir.check_groups()
    follow = load_task("mFollowIR", "rus", data_root=hub_fixtures["hub"])
    assert follow.limit_queries(1) == 2 and sorted(follow.query_ids()) == ["100-changed", "100-og"]
    scifact = load_task("SciFact", data_root=hub_fixtures["hub"])
    scifact.set_candidates({q: scifact.corpus_ids()[:2] for q in scifact.query_ids()})
    assert scifact.limit_queries(3) == 3  # no groups: exactly n


def test_incomplete_group_is_refused_before_judging(hub_fixtures):
    nevir = load_task("NevIR", data_root=hub_fixtures["hub"])
    del nevir.data["relevant_docs"]["1002-2_q2"]
    with pytest.raises(TaskError, match=r"1002-2 \(missing 1002-2_q2\)"):
        nevir.check_groups()


def test_loader_failures_say_what_they_are(hub_fixtures, tmp_path):
    with pytest.raises(TaskError, match="no local copy of 'mteb/scifact'.*expected the folder"):
        load_task("SciFact", data_root=tmp_path)
    with pytest.raises(TaskError, match="--dataset-path .* is not a folder"):
        load_task("SciFact", dataset_path=str(tmp_path / "missing"))
    broken = tmp_path / "BRIGHT-without-gold-ids"  # its own name: datasets caches local folders by name
    shutil.copytree(Path(hub_fixtures["hub"]) / "mteb" / "BRIGHT", broken)
    import pandas as pd

    for path in (broken / "examples").glob("*.parquet"):
        pd.read_parquet(path).drop(columns=["gold_ids"]).to_parquet(path)
    with pytest.raises(TaskError) as info:
        load_task("BrightBiologyRetrieval", dataset_path=str(broken))
    message = str(info.value)
    assert "could not download" not in message
    assert "loading local copy" in message and "KeyError" in message and "gold_ids" in message


def test_hub_download_failure_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("RANK1_DATA_ROOT", raising=False)
    with pytest.raises(TaskError, match="could not download .*mteb/scifact.*--dataset-path"):
        load_task("SciFact")


def test_seed_beir_names_are_mteb_tasks():
    assert set(PAPER_BEIR) <= set(BEIR_TASKS)


def test_same_named_or_edited_local_copies_never_share_a_cache(hub_fixtures, tmp_path):
    """datasets keys a local folder's cache by its name: two copies called NevIR-mteb must still differ."""
    import pandas as pd

    source = Path(hub_fixtures["hub"]) / "orionweller" / "NevIR-mteb"
    a, b = tmp_path / "a" / "NevIR-mteb", tmp_path / "b" / "NevIR-mteb"
    shutil.copytree(source, a)
    shutil.copytree(source, b)
    corpus = b / "corpus" / "corpus-00000-of-00001.parquet"
    frame = pd.read_parquet(corpus)
    frame.loc[0, "text"] = "edited in copy b"
    frame.to_parquet(corpus)
    text_a = load_task("NevIR", dataset_path=str(a)).data["corpus"]["text"][0]
    text_b = load_task("NevIR", dataset_path=str(b)).data["corpus"]["text"][0]
    assert text_b == "edited in copy b" != text_a
    frame.loc[0, "text"] = "edited again"
    frame.to_parquet(corpus)
    again = load_task("NevIR", dataset_path=str(b))
    assert again.data["corpus"]["text"][0] == "edited again"
    assert again.dataset_path == str(b) and again.dataset_revision.startswith("local-")
