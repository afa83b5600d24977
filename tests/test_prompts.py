"""Prompts are data: verbatim texts, selection rules, instruction merge, prompt files."""

from __future__ import annotations

import json

import pytest

from rank1_eval import prompts as P

RANK1 = (
    "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'.\n"
    "Query: {QUERY}\nPassage: {PASSAGE}\n<think>"
)


def test_rank1_prompt_is_verbatim():
    assert P.rank1_template() == RANK1
    assert P.format_prompt("q {x}", "d") == RANK1.replace("{QUERY}", "q {x}").replace("{PASSAGE}", "d")
    assert P.format_prompt("q", "d").endswith("Passage: d\n<think>")


def test_templates_keep_trailing_whitespace():
    code = P.load_prompt_set("code")
    assert code["Touche2020"].endswith("help me?\n\n")
    assert code["BrightRetrieval_leetcode"].endswith("chapter. \n\n\n")
    assert "this:\n    \nFILL_QUERY_HERE" in code["BrightRetrieval_leetcode"]
    assert "explicitly. \n\nFind me" in code["NFCorpus"]
    assert code["BrightRetrieval_theoremqa_theorems"] == code["BrightRetrieval_theoremqa_questions"]
    assert len(code) == 15


@pytest.mark.parametrize(
    ("task", "subset", "expected_start"),
    [
        ("SciFact", "default", "Claim: FILL_QUERY_HERE"),
        ("BrightRetrieval", "pony", "I will use the programming language pony."),
        ("BrightRetrieval", "biology", "Can you find background information"),
        ("BrightBiologyRetrieval", "standard", "Can you find background information"),
        ("BrightAopsRetrieval", "standard", "Find different but similar math problems"),
        ("BrightTheoremQATheoremsRetrieval", "standard", "Find a passage which uses"),
        ("BrightLeetcodeRetrieval", "standard", "I am looking to find different problems"),
        ("BrightPonyLongRetrieval", "long", "I will use the programming language pony."),
        ("BrightBiologyLongRetrieval", "long", "Can you find background information"),
    ],
)
def test_select_template(task, subset, expected_start):
    assert P.select_template(P.load_prompt_set("code"), task, subset).startswith(expected_start)


@pytest.mark.parametrize(
    "task", ["NevIR", "mFollowIR", "mFollowIRCrossLingual", "FEVER", "HotpotQA", "NQ", "QuoraRetrieval", "TRECDL2019"]
)
def test_tasks_without_template(task):
    assert P.select_template(P.load_prompt_set("code"), task, "default") is None


def test_paper_set_differences():
    code, paper = P.load_prompt_set("code"), P.load_prompt_set("paper")
    assert paper["ClimateFEVER"] == code["SciFact"]
    assert paper["Touche2020"] == "FILL_QUERY_HERE **any** arguments for or against"
    assert P.select_template(paper, "BrightRetrieval", "biology") is None
    assert P.select_template(paper, "BrightRetrieval", "pony") == code["BrightRetrieval_pony"]
    assert P.prompt_set_sha256(code) != P.prompt_set_sha256(paper)


def test_prompt_file_overrides_and_extends(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"MyTask": "Q: FILL_QUERY_HERE!", "SciFact": None}))
    t = P.load_prompt_set("code", f)
    assert P.apply_template("x", P.select_template(t, "MyTask", "default")) == "Q: x!"
    assert P.select_template(t, "SciFact", "default") is None


@pytest.mark.parametrize(
    ("content", "match"),
    [("not json", "cannot read"), ("[1, 2]", "JSON object"), ('{"A": "no placeholder"}', "placeholder")],
)
def test_bad_prompt_file(tmp_path, content, match):
    f = tmp_path / "p.json"
    f.write_text(content)
    with pytest.raises(P.PromptError, match=match):
        P.load_prompt_set("code", f)


def test_unknown_prompt_set():
    with pytest.raises(P.PromptError, match="code, paper"):
        P.load_prompt_set("nope")


@pytest.mark.parametrize(
    ("query", "instruction", "expected"),
    [
        ("what is x", None, "what is x"),
        ("what is x", "", "what is x"),
        ("what is x", "Only docs about y.", "what is x Only docs about y."),
        ("  same  ", "same", "same"),  # the query already is the instruction
        ("", "just the instruction ", "just the instruction"),
    ],
)
def test_merge_instruction(query, instruction, expected):
    assert P.merge_instruction(query, instruction) == expected


def test_instruction_then_template():
    assert P.build_query("claim", "instr", "Claim: FILL_QUERY_HERE.") == "Claim: claim instr."


def test_dict_docs():
    assert P.doc_text({"title": "T", "text": "body"}) == "T body"
    assert P.doc_text({"title": "", "text": "body"}) == " body"  # the reference's f-string, kept
    assert P.doc_text({"text": "body"}) == "body"
    assert P.doc_text("plain") == "plain"


def test_prompt_key_gives_a_local_copy_a_known_template_and_summary_names_it(tmp_path, capsys):
    """A local BEIR copy of SciFact (task name 'DemoLocal') gets SciFact's template with --prompt-key."""
    from conftest import DEMO, MICRO_RANK1

    from rank1_eval.cli import main
    from rank1_eval.model import rank1

    base = [
        "run",
        "--task",
        str(DEMO),
        "--run-file",
        str(DEMO / "bm25s_top20.trec"),
        "--model",
        str(MICRO_RANK1),
        "--limit-queries",
        "1",
        "--top-k",
        "2",
        "--dry-run",
        "--output-dir",
        str(tmp_path),
    ]
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["prompt_template"] == {
        "key": None,
        "source": "none (raw query)",
        "prompt_set": "code",
        "template": None,
        "sha256": None,
    }
    assert main([*base, "--prompt-key", "SciFact"]) == 0
    keyed = json.loads(capsys.readouterr().out)
    template = P.load_prompt_set("code")["SciFact"]
    assert keyed["prompt_template"]["key"] == "SciFact" and keyed["prompt_template"]["source"] == "prompt_key"
    assert keyed["prompt_template"]["template"] == template and keyed["prompt_tokens"] > plain["prompt_tokens"]
    model = rank1(str(MICRO_RANK1), device="cpu", prompt_key="SciFact")
    final = model.final_queries(["a claim"], [None], "DemoLocal", "default")
    assert final == [template.replace(P.PLACEHOLDER, "a claim")]
    assert model.template_info("NevIR", "default")["source"] == "prompt_key"  # a key wins over the task's own
    assert main([*base, "--prompt-key", "NoSuchKey"]) == 2
    assert "unknown prompt key 'NoSuchKey'" in capsys.readouterr().err
