"""Everything the model reads, decided before the model is loaded (docs/rule.md §1-§3).

The rank1 prompt is fixed; a per-dataset template may wrap the query. Templates are data (``prompts/*.json``)
so a prompt change is a data change with a visible hash, not a code change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

PLACEHOLDER = "FILL_QUERY_HERE"
PROMPT_SETS = ("code", "paper")

# mteb 2.x splits BRIGHT into one task per domain; they get the prompts of `BrightRetrieval` + subset.
BRIGHT_DOMAIN_TASKS = {
    "BrightBiologyRetrieval": "biology",
    "BrightEarthScienceRetrieval": "earth_science",
    "BrightEconomicsRetrieval": "economics",
    "BrightPsychologyRetrieval": "psychology",
    "BrightRoboticsRetrieval": "robotics",
    "BrightStackoverflowRetrieval": "stackoverflow",
    "BrightSustainableLivingRetrieval": "sustainable_living",
    "BrightPonyRetrieval": "pony",
    "BrightLeetcodeRetrieval": "leetcode",
    "BrightAopsRetrieval": "aops",
    "BrightTheoremQATheoremsRetrieval": "theoremqa_theorems",
    "BrightTheoremQAQuestionsRetrieval": "theoremqa_questions",
}


class PromptError(ValueError):
    """A prompt set or template that cannot be used."""


def _read_bundled(name: str) -> dict[str, str | None]:
    from rank1_eval._data import PROMPTS_DIR

    return json.loads((PROMPTS_DIR / name).read_text(encoding="utf-8"))


@cache
def rank1_template() -> str:
    """The verbatim rank1 prompt with ``{QUERY}`` and ``{PASSAGE}`` fields."""
    return _read_bundled("system.json")["rank1"]  # type: ignore[return-value]


def load_prompt_set(prompt_set: str = "code", prompt_file: str | Path | None = None) -> dict[str, str | None]:
    """The dataset templates of a bundled set, overridden/extended by a user JSON file ``{key: template}``."""
    if prompt_set not in PROMPT_SETS:
        raise PromptError(f"unknown prompt_set {prompt_set!r}; choose one of {', '.join(PROMPT_SETS)}")
    templates = dict(_read_bundled(f"{prompt_set}.json"))
    if prompt_file is not None:
        path = Path(prompt_file)
        try:
            extra = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PromptError(f"cannot read prompt file {path}: {exc}") from exc
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in extra.items()
        ):
            raise PromptError(f"prompt file {path} must be a JSON object {{key: template string or null}}")
        templates.update(extra)
    for key, template in templates.items():
        if template is not None and PLACEHOLDER not in template:
            raise PromptError(f"template {key!r} has no {PLACEHOLDER} placeholder")
    return templates


def template_key(task: str | None, subset: str | None) -> tuple[str, str | None]:
    """Normalise (task, subset) to the prompt-table naming: per-domain BRIGHT tasks -> BrightRetrieval.

    The long-document variants (``BrightPonyLongRetrieval``, ...) share their domain's template.
    """
    short = task.replace("LongRetrieval", "Retrieval") if task else task
    if short in BRIGHT_DOMAIN_TASKS:
        return "BrightRetrieval", BRIGHT_DOMAIN_TASKS[short]
    return task or "", subset


def selected_key(templates: Mapping[str, str | None], task: str | None, subset: str | None) -> str | None:
    """The key of the template (task, subset) gets: ``f"{task}_{subset}"`` if present, else ``task``, else None."""
    name, sub = template_key(task, subset)
    if sub and sub != "default" and f"{name}_{sub}" in templates:
        return f"{name}_{sub}"
    return name if name in templates else None


def select_template(templates: Mapping[str, str | None], task: str | None, subset: str | None) -> str | None:
    """``f"{task}_{subset}"`` if present, else ``task``, else none (docs/rule.md §2)."""
    key = selected_key(templates, task, subset)
    return templates[key] if key is not None else None


def template_sha256(template: str | None) -> str | None:
    return hashlib.sha256(template.encode("utf-8")).hexdigest() if template is not None else None


def merge_instruction(query: str, instruction: str | None) -> str:
    """``f"{q} {instr}".strip()`` unless the query already *is* the instruction (docs/rule.md §1)."""
    if not instruction:
        return query
    if query.strip() == instruction.strip():
        return query.strip()
    return f"{query} {instruction}".strip()


def doc_text(doc: str | Mapping[str, str]) -> str:
    """Dict documents become ``f"{title} {text}"`` when a title key exists, else ``text``."""
    if isinstance(doc, str):
        return doc
    if "title" in doc:
        return f"{doc['title']} {doc['text']}"
    return doc["text"]


def apply_template(query: str, template: str | None) -> str:
    return template.replace(PLACEHOLDER, query) if template else query


def build_query(query: str, instruction: str | None, template: str | None) -> str:
    """Instruction merge first, then the dataset template."""
    return apply_template(merge_instruction(query, instruction), template)


def format_prompt(query: str, passage: str) -> str:
    return rank1_template().format(QUERY=query, PASSAGE=passage)


def prompt_set_sha256(templates: Mapping[str, str | None]) -> str:
    """A hash of the rank1 prompt plus the dataset templates in force, for provenance."""
    payload = json.dumps({"rank1": rank1_template(), "templates": dict(templates)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
