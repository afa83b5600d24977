"""Build small local copies of every dataset the rank1 paper uses, laid out exactly as mteb 2.26.24 reads the Hub.

    python scripts/make_hub_fixtures.py OUT            # writes OUT/hub, OUT/run-files, OUT/dl19

Each copy is a folder with one parquet file per (config, split) and a README.md whose YAML front matter declares
the configs, which is what ``datasets.load_dataset(<folder>, <config>)`` reads; config, split and column names
and types follow the loaders in mteb's source (not guessed):

- ``xlangai/BRIGHT`` (``BrightRetrieval``, v1 loader) and ``mteb/BRIGHT`` (the per-domain ``Bright*Retrieval``
  tasks, v1.1 loader): configs ``documents`` / ``long_documents`` (``id``, ``content``) and ``examples``
  (``query``, ``reasoning``, ``id``, ``excluded_ids``, ``gold_ids_long``, ``gold_ids``), one split per domain;
  all 12 domains (``BrightRetrieval`` loads every one), long documents for the 8 StackExchange/pony domains.
  ``excluded_ids`` are real lists on leetcode, aops and the two theoremqa domains and ``["N/A"]`` elsewhere,
  as on the Hub.
- ``jhu-clsp/mFollowIR-parquet-mteb`` and ``jhu-clsp/mFollowIR-cross-lingual-parquet-mteb``: per language
  ``corpus-<l>`` (split ``corpus``: ``_id``, ``title``, ``text``), ``queries-<l>`` (``queries``: ``_id``,
  ``text``), ``instruction-<l>`` (``instruction``: ``query-id``, ``instruction``), ``default-<l>`` (``test``:
  ``query-id``, ``corpus-id``, ``score``), ``top_ranked-<l>`` (``top_ranked``: ``query-id``, ``corpus-ids``),
  ``qrel_diff-<l>`` (``qrel_diff``: ``query-id``, ``corpus-ids``); query ids ``<n>-og`` / ``<n>-changed``.
- ``orionweller/NevIR-mteb``: ``corpus``, ``queries``, ``default`` (qrels, split ``test``) and ``top_ranked``
  (split ``test``); ids ``<pair>_q1`` / ``<pair>_q2``, two candidates per query.
- The nine BEIR tasks of Table 6 (``mteb/scifact``, ``mteb/arguana``, ...): ``corpus``, ``queries`` and
  ``default`` (qrels, split ``test``). The ArguAna copy has queries that are also corpus documents with the
  same id (mteb's ``ignore_identical_ids``); the SciFact copy has a judged query the run file leaves without
  candidates; the NFCorpus copy has a query judged only with grade 0.

``OUT/run-files`` is laid out like ``jhu-clsp/rank1-run-files`` (``rank1_eval/data/run_files/manifest.json``)
with a bm25s first stage for every task the tables rerank (``RANK1_RUN_FILES=OUT/run-files``); BRIGHT runs also
rank the excluded documents, so their removal is visible. ``OUT/dl19`` is a BEIR folder of 4 TREC DL 2019
queries (from the bundled demo) with a bm25s run standing in for RepLLaMA and a made-up "re-judged" qrels file,
for Table 5's ``DL19_DIR``/``DL19_RUN``/``DL19_REJUDGED``.

Texts: BRIGHT, mFollowIR and NevIR texts are generated here (seeded); the BEIR and DL19 copies reuse passages,
queries and judgements of the bundled demo task (MS MARCO / TREC DL 2019: non-commercial research use, see
``rank1_eval/data/run_files/demo/dl19-mini/README.md``). The numbers these copies produce mean nothing about
the models; they exist so every task runs through mteb's own classes offline.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rank1_eval.tasks import BRIGHT_DOMAINS  # the domains the harness knows: the fixtures build each

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"

BRIGHT_LONG = BRIGHT_DOMAINS[:8]
BRIGHT_EXCLUDING = ("leetcode", "aops", "theoremqa_theorems", "theoremqa_questions")
BEIR_REPOS = {
    "ArguAna": "mteb/arguana",
    "ClimateFEVER": "mteb/climate-fever",
    "DBPedia": "mteb/dbpedia",
    "FiQA2018": "mteb/fiqa",
    "NFCorpus": "mteb/nfcorpus",
    "SCIDOCS": "mteb/scidocs",
    "SciFact": "mteb/scifact",
    "Touche2020": "mteb/touche2020",
    "TRECCOVID": "mteb/trec-covid",
}
MFOLLOWIR_REPOS = {
    "mFollowIR": "jhu-clsp/mFollowIR-parquet-mteb",
    "mFollowIRCrossLingual": "jhu-clsp/mFollowIR-cross-lingual-parquet-mteb",
}
LANGS = ("fas", "rus", "zho")

_WORDS = {  # generated text needs only a vocabulary per language
    lang: words.split()
    for lang, words in {
        "en": "signal pathway cell membrane energy river basin sediment market price demand memory habit sensor "
        "motor joint thread queue array graph tree heap soil compost solar water actor behaviour reference "
        "capability integer prime triangle circle function limit matrix vector theorem proof climate storm coral "
        "enzyme protein gene neuron learning reward inflation policy wage robot gripper camera compiler pointer",
        "fas": "اخبار شهر دولت مردم اقتصاد بازار آب برق مدرسه دانشگاه بیمارستان جاده قیمت کار انتخابات ورزش",
        "rus": "новости город власти люди экономика рынок вода энергия школа университет больница дорога цена "
        "работа выборы спорт",
        "zho": "新闻 城市 政府 人民 经济 市场 水 电力 学校 大学 医院 道路 价格 工作 选举 体育",
    }.items()
}


# ------------------------------------------------------------------------------------------------ writing


def _yaml_configs(configs: Mapping[str, Mapping[str, str]]) -> str:
    """README front matter declaring ``config -> split -> parquet path`` (what ``load_dataset(folder)`` reads)."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines.append(f"- config_name: {config}")
        lines.append("  data_files:")
        for split, path in splits.items():
            lines.append(f"  - split: {split}")
            lines.append(f"    path: {path}")
    lines.append("---")
    return "\n".join(lines) + "\n"


class HubRepo:
    """A local folder laid out like a Hub dataset repo of parquet files."""

    def __init__(self, folder: Path, card: str) -> None:
        self.folder = folder
        self.card = card
        self.configs: dict[str, dict[str, str]] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, config: str, split: str, rows: Sequence[Mapping[str, Any]], schema: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rel = f"{config}/{split}-00000-of-00001.parquet"
        (self.folder / config).mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([dict(r) for r in rows], schema=schema)
        pq.write_table(table, self.folder / rel)
        self.configs.setdefault(config, {})[split] = rel

    def close(self) -> Path:
        (self.folder / "README.md").write_text(_yaml_configs(self.configs) + "\n" + self.card + "\n", encoding="utf-8")
        return self.folder


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    s, ls = pa.string(), pa.list_(pa.string())
    return {
        "bright_docs": pa.schema([("id", s), ("content", s)]),
        "bright_examples": pa.schema(
            [("query", s), ("reasoning", s), ("id", s), ("excluded_ids", ls), ("gold_ids_long", ls), ("gold_ids", ls)]
        ),
        "corpus": pa.schema([("_id", s), ("title", s), ("text", s)]),
        "corpus_notitle": pa.schema([("_id", s), ("text", s)]),
        "queries": pa.schema([("_id", s), ("text", s)]),
        "qrels_int": pa.schema([("query-id", s), ("corpus-id", s), ("score", pa.int64())]),
        "qrels_float": pa.schema([("query-id", s), ("corpus-id", s), ("score", pa.float64())]),
        "instruction": pa.schema([("query-id", s), ("instruction", s)]),
        "id_list": pa.schema([("query-id", s), ("corpus-ids", ls)]),
    }


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _bm25(docs: Mapping[str, str], queries: Mapping[str, str], k: int = 100) -> dict[str, dict[str, float]]:
    from rank1_eval.runs import bm25_run

    return bm25_run(dict(docs), dict(queries), k=k, stopwords=None)


# ------------------------------------------------------------------------------------------------ texts


def _sentence(rng: random.Random, words: Sequence[str], n: int, must: Sequence[str] = ()) -> str:
    picked = [rng.choice(words) for _ in range(n)] + list(must)
    rng.shuffle(picked)
    return " ".join(picked).capitalize() + "."


def _paragraph(rng: random.Random, words: Sequence[str], sentences: int, must: Sequence[str] = ()) -> str:
    return " ".join(_sentence(rng, words, rng.randint(6, 11), must if i == 0 else ()) for i in range(sentences))


# ------------------------------------------------------------------------------------------------ BRIGHT


def build_bright(hub: Path, run_files: Path, n_queries: int = 3) -> dict[str, Any]:
    """xlangai/BRIGHT and mteb/BRIGHT (same content), plus the ``{domain}_bm25_long_False/score.json`` runs."""
    schemas = _schemas()
    words = _WORDS["en"]
    card = "Test copy of BRIGHT built by scripts/make_hub_fixtures.py (generated text)."
    repo = HubRepo(hub / "xlangai" / "BRIGHT", card)
    stats: dict[str, Any] = {}
    for d_i, domain in enumerate(BRIGHT_DOMAINS):
        rng = random.Random(1000 + d_i)
        docs: dict[str, str] = {}
        long_docs: dict[str, str] = {}
        examples = []
        for q in range(n_queries):
            topic = rng.sample(words, 3)
            gold = [f"{domain}_{topic[0]}/{j}.txt" for j in range(2)]
            for g in gold:
                docs[g] = _paragraph(rng, words, 3, topic)
            for j in range(3):  # distractors sharing one topic word
                docs[f"{domain}_{topic[1]}_other/{j}.txt"] = _paragraph(rng, words, 3, topic[1:2])
            gold_long = [f"{domain}_{topic[0]}_long.txt"]
            if domain in BRIGHT_LONG:
                long_docs[gold_long[0]] = _paragraph(rng, words, 120, topic)  # ~1,100 words: longer than a test context
                long_docs[f"{domain}_{topic[2]}_long_other.txt"] = _paragraph(rng, words, 90, topic[2:])
            query = _sentence(rng, words, 9, topic)
            excluded = ["N/A"]
            if domain in BRIGHT_EXCLUDING:  # the query's own problem is in the corpus and must not count
                own = f"{domain}_self_{q}.txt"
                docs[own] = query + " " + _sentence(rng, words, 6)
                excluded = [own]
            examples.append(
                {
                    "query": query,
                    "reasoning": _sentence(rng, words, 7),
                    "id": str(q),
                    "excluded_ids": excluded,
                    "gold_ids_long": gold_long if domain in BRIGHT_LONG else ["N/A"],
                    "gold_ids": gold,
                }
            )
        for j in range(4):  # unrelated filler
            docs[f"{domain}_filler/{j}.txt"] = _paragraph(rng, words, 2)
        repo.add("documents", domain, [{"id": i, "content": t} for i, t in docs.items()], schemas["bright_docs"])
        repo.add("examples", domain, examples, schemas["bright_examples"])
        if domain in BRIGHT_LONG:
            rows = [{"id": i, "content": t} for i, t in long_docs.items()]
            repo.add("long_documents", domain, rows, schemas["bright_docs"])
        run = _bm25(docs, {e["id"]: e["query"] for e in examples})
        for e in examples:  # excluded documents at the top of the run, as a first stage that ignores them would
            for x in e["excluded_ids"]:
                if x != "N/A":
                    run[e["id"]][x] = max(run[e["id"]].values(), default=0.0) + 1.0
        _write_json(run_files / f"{domain}_bm25_long_False" / "score.json", run)
        stats[domain] = {"docs": len(docs), "long_docs": len(long_docs), "queries": len(examples)}
    repo.close()
    mirror = hub / "mteb" / "BRIGHT"  # the v1.1 tasks read the same layout from mteb/BRIGHT
    if mirror.exists():
        shutil.rmtree(mirror)
    shutil.copytree(repo.folder, mirror)
    return stats


# ------------------------------------------------------------------------------------------------ mFollowIR


def build_mfollowir(hub: Path, run_files: Path, n_queries: int = 2, n_docs: int = 6) -> dict[str, Any]:
    """Both mFollowIR repos (3 languages each) and their ``*_predictions.json`` first stages."""
    schemas = _schemas()
    stats: dict[str, Any] = {}
    for t_i, (task, repo_id) in enumerate(MFOLLOWIR_REPOS.items()):
        cross = task == "mFollowIRCrossLingual"
        repo = HubRepo(hub / repo_id, f"Test copy of {repo_id} built by scripts/make_hub_fixtures.py (generated text).")
        for l_i, lang in enumerate(LANGS):
            rng = random.Random(2000 + 10 * t_i + l_i)
            dwords, qwords = _WORDS[lang], _WORDS["en" if cross else lang]
            corpus = {
                f"{lang}-doc-{j}": {"title": _sentence(rng, dwords, 3), "text": _paragraph(rng, dwords, 2)}
                for j in range(n_docs)
            }
            ids = list(corpus)
            queries, instructions, qrels, diff, top = {}, {}, [], {}, {}
            for q in range(n_queries):
                base = f"{100 + q}"
                relevant = rng.sample(ids, 3)
                changed = relevant[0]  # relevant under the original instruction, not under the changed one
                text = _sentence(rng, qwords, 5)
                instr = _sentence(rng, qwords, 10)
                for suffix, rel in (("og", relevant), ("changed", relevant[1:])):
                    qid = f"{base}-{suffix}"
                    queries[qid] = text
                    instructions[qid] = instr if suffix == "og" else instr + " " + _sentence(rng, qwords, 6)
                    qrels += [{"query-id": qid, "corpus-id": d, "score": 1.0} for d in rel]
                    top[qid] = ids  # mteb's own candidate list: every document
                diff[base] = [changed]
            repo.add(f"corpus-{lang}", "corpus", [{"_id": i, **d} for i, d in corpus.items()], schemas["corpus"])
            repo.add(
                f"queries-{lang}", "queries", [{"_id": i, "text": t} for i, t in queries.items()], schemas["queries"]
            )
            rows = [{"query-id": i, "instruction": t} for i, t in instructions.items()]
            repo.add(f"instruction-{lang}", "instruction", rows, schemas["instruction"])
            repo.add(f"default-{lang}", "test", qrels, schemas["qrels_float"])
            repo.add(
                f"top_ranked-{lang}",
                "top_ranked",
                [{"query-id": q, "corpus-ids": d} for q, d in top.items()],
                schemas["id_list"],
            )
            repo.add(
                f"qrel_diff-{lang}",
                "qrel_diff",
                [{"query-id": q, "corpus-ids": d} for q, d in diff.items()],
                schemas["id_list"],
            )
            docs = {i: f"{d['title']} {d['text']}" for i, d in corpus.items()}
            run = _bm25(docs, {q: f"{t} {instructions[q]}" for q, t in queries.items()})
            for qid in queries:  # every candidate scored, as a dense first stage would
                for rank, d in enumerate(ids):
                    run[qid].setdefault(d, -1.0 - rank)
            sub = f"eng-{lang}" if cross else lang
            _write_json(run_files / f"{task}_{sub}_predictions.json", run)
            stats[f"{task}/{sub}"] = {"docs": len(corpus), "queries": len(queries)}
        repo.close()
    return stats


# ------------------------------------------------------------------------------------------------ NevIR


def build_nevir(hub: Path, n_pairs: int = 6) -> dict[str, Any]:
    schemas = _schemas()
    rng = random.Random(3000)
    things = ["museum", "library", "bakery", "pool", "market", "station", "garden", "cinema"]
    days = ["Sundays", "holidays", "Mondays", "weekends", "evenings", "mornings"]
    repo = HubRepo(hub / "orionweller" / "NevIR-mteb", "Test copy of NevIR-mteb built by scripts/make_hub_fixtures.py.")
    corpus, queries, qrels, top = [], [], [], []
    for p in range(n_pairs):
        key = f"{1000 + p}-2"
        thing, day = rng.choice(things), rng.choice(days)
        d1, d2 = f"{key}_doc1", f"{key}_doc2"
        corpus += [
            {"_id": d1, "text": f"The {thing} is open on {day}, and visitors may come in."},
            {"_id": d2, "text": f"The {thing} is not open on {day}, and visitors may not come in."},
        ]
        for q, doc, text in (
            ("q1", d1, f"Which {thing} is open on {day}?"),
            ("q2", d2, f"Which {thing} is closed on {day}?"),
        ):
            qid = f"{key}_{q}"
            queries.append({"_id": qid, "text": text})
            qrels.append({"query-id": qid, "corpus-id": doc, "score": 1.0})
            top.append({"query-id": qid, "corpus-ids": [d1, d2]})
    repo.add("corpus", "corpus", corpus, schemas["corpus_notitle"])
    repo.add("queries", "queries", queries, schemas["queries"])
    repo.add("default", "test", qrels, schemas["qrels_float"])
    repo.add("top_ranked", "test", top, schemas["id_list"])
    repo.close()
    return {"NevIR": {"queries": len(queries), "docs": len(corpus)}}


# ------------------------------------------------------------------------------------------------ BEIR, DL19


def _demo() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    corpus = {}
    for line in (DEMO / "corpus.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        corpus[row["_id"]] = row["text"]
    queries = {json.loads(line)["_id"]: json.loads(line)["text"] for line in (DEMO / "queries.jsonl").open()}
    qrels: dict[str, dict[str, int]] = {}
    for line in (DEMO / "qrels" / "test.tsv").open(encoding="utf-8"):
        q, d, r = line.rstrip("\n").split("\t")
        qrels.setdefault(q, {})[d] = int(r)
    return corpus, queries, qrels


def _small_task(
    offset: int, n_queries: int, corpus: Mapping[str, str], queries: Mapping[str, str], qrels: Mapping[str, Any]
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]], dict[str, dict[str, float]]]:
    """``n_queries`` demo queries, their bm25s top-8 over the demo corpus plus 3 judged passages each."""
    qids = sorted(queries)
    picked = [qids[(offset + i) % len(qids)] for i in range(n_queries)]
    full_run = _bm25(corpus, {q: queries[q] for q in picked}, k=8)
    keep: set[str] = set()
    sub_qrels: dict[str, dict[str, int]] = {}
    for q in picked:
        keep |= set(full_run[q])
        judged = sorted(qrels[q].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        sub_qrels[q] = {d: r for d, r in qrels[q].items() if d in full_run[q]} | dict(judged)
        keep |= set(sub_qrels[q])
    sub_corpus = {d: corpus[d] for d in sorted(keep)}
    run = _bm25(sub_corpus, {q: queries[q] for q in picked}, k=8)
    return sub_corpus, {q: queries[q] for q in picked}, sub_qrels, run


def build_beir(hub: Path, run_files: Path) -> dict[str, Any]:
    schemas = _schemas()
    corpus, queries, qrels = _demo()
    stats: dict[str, Any] = {}
    for i, (task, repo_id) in enumerate(BEIR_REPOS.items()):
        docs, qs, judged, run = _small_task(i, 3, corpus, queries, qrels)
        qs = dict(qs)
        if task == "ArguAna":  # each query is also a corpus document with its id: mteb drops qid == docid
            for q, text in qs.items():
                docs[q] = text
                run[q][q] = max(run[q].values()) + 1.0
        if task == "SciFact":  # a judged query the first stage returns nothing for: mteb scores it 0
            extra = sorted(set(queries) - set(qs))[0]
            qs[extra] = queries[extra]
            judged[extra] = dict(sorted(qrels[extra].items())[:2])
            docs.update({d: corpus[d] for d in judged[extra]})
        if task == "NFCorpus":  # a query judged only with grade 0: evaluated by mteb, nDCG 0
            extra = sorted(set(queries) - set(qs))[-1]
            qs[extra] = queries[extra]
            zero = sorted(docs)[0]
            judged[extra] = {zero: 0}
            run[extra] = {zero: 1.0, sorted(docs)[1]: 0.5}
        repo = HubRepo(
            hub / repo_id,
            f"Test copy of {repo_id} built by scripts/make_hub_fixtures.py "
            "(MS MARCO passages and TREC DL 2019 judgements: non-commercial research use).",
        )
        repo.add("corpus", "corpus", [{"_id": d, "title": "", "text": t} for d, t in docs.items()], schemas["corpus"])
        repo.add("queries", "queries", [{"_id": q, "text": t} for q, t in qs.items()], schemas["queries"])
        rows = [{"query-id": q, "corpus-id": d, "score": r} for q, ds in judged.items() for d, r in ds.items()]
        repo.add("default", "test", rows, schemas["qrels_int"])
        repo.close()
        _write_json(run_files / f"{task}_default_predictions.json", run)
        stats[task] = {"docs": len(docs), "queries": len(qs), "run_queries": len(run)}
    return stats


def build_dl19(out: Path, n_queries: int = 4) -> dict[str, str]:
    """Table 5's three inputs: a BEIR folder (original qrels), a top-20 run and a made-up re-judged qrels file."""
    from rank1_eval.runs import read_run, write_trec

    corpus, queries, qrels = _demo()
    qids = sorted(queries)[:n_queries]
    run = {q: docs for q, docs in read_run(DEMO / "bm25s_top20.trec").items() if q in qids}
    keep = {d for q in qids for d in run[q]} | {d for q in qids for d in qrels[q]}
    folder = out / "dl19"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for d in sorted(keep):
            f.write(json.dumps({"_id": d, "title": "", "text": corpus[d]}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in qids:
            f.write(json.dumps({"_id": q, "text": queries[q]}, ensure_ascii=False) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        for q in qids:
            for d, r in sorted(qrels[q].items()):
                f.write(f"{q}\t{d}\t{r}\n")
    run_path = write_trec(run, folder / "run_top20.trec", tag="bm25s")
    # "re-judged": every top-10 passage judged again, made up here (grades flipped on even positions, unjudged
    # ones graded 1/0 by position), so the two judgement sets give different numbers; not real judgements
    rejudged = folder / "rejudged.qrels"
    with rejudged.open("w", encoding="utf-8") as f:
        for q in qids:
            top10 = sorted(run[q].items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            grades = dict(qrels[q])
            for pos, (d, _) in enumerate(top10):
                grades[d] = (3 - grades[d] if pos % 2 == 0 else grades[d]) if d in grades else int(pos % 2 == 0)
            for d, r in sorted(grades.items()):
                f.write(f"{q} 0 {d} {r}\n")
    (folder / "README.md").write_text(
        "# dl19 test copy\n\nFour TREC DL 2019 queries of the bundled demo (MS MARCO passages, NIST judgements: "
        "non-commercial research use). `run_top20.trec` is a bm25s run standing in for RepLLaMA's; "
        "`rejudged.qrels` is made up by scripts/make_hub_fixtures.py, not the paper's re-judgements.\n",
        encoding="utf-8",
    )
    return {"DL19_DIR": str(folder), "DL19_RUN": str(run_path), "DL19_REJUDGED": str(rejudged)}


def build(out: str | Path) -> dict[str, Any]:
    """Everything under ``out``: ``hub/`` (a --data-root), ``run-files/`` (RANK1_RUN_FILES), ``dl19/``."""
    out = Path(out)
    hub, run_files = out / "hub", out / "run-files"
    for folder in (hub, run_files, out / "dl19"):
        if folder.exists():
            shutil.rmtree(folder)
    stats = {
        "bright": build_bright(hub, run_files),
        "mfollowir": build_mfollowir(hub, run_files),
        "nevir": build_nevir(hub),
        "beir": build_beir(hub, run_files),
    }
    dl19 = build_dl19(out)
    return {"hub": str(hub), "run_files": str(run_files), "dl19": dl19, "stats": stats}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/make_hub_fixtures.py OUT")
    info = build(sys.argv[1])
    print(json.dumps({k: v for k, v in info.items() if k != "stats"}, indent=1))
