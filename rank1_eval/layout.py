"""Where results live: the one function that names a run's folder, and the one lookup every reader uses.

rank1_eval's own layout, one folder per run::

    <output_dir>/<model>/<Task>_<subtask>/<readable settings>-<hash>/   summary.json, traces.jsonl, run.trec, ...

The hash covers every setting that can change what the folder holds (see :func:`settings_hash`): the model and
its revision (or a fingerprint of local weights), engine, dtype, prompt set and dataset prompt, the scoring
budgets and length rule, task/subset/split and dataset revision, the first stage and its checksum, top-k,
``--limit-queries``, the main metric and extra qrels. The same settings therefore resume into the same folder,
and two runs that could differ never share one. The readable part (``top100-code-out8192-float16-vllm``, with
``first2`` after the top-k for a 2-query smoke run) is for people; only the hash decides.

mteb's ``ResultCache`` layout, beside it in the same root (see :func:`export_to_mteb`)::

    <output_dir>/results/<org__model>/<revision>/[experiments/<name>/]<Task>.json + model_meta.json

Readers (``table``, ``reproduce``, ``compare``, ``report``, :func:`rank1_eval.outputs.load_traces`) locate
folders only through :func:`list_runs`, :func:`choose_run` and :func:`resolve_run_folder`: they pick the
complete run and refuse partial ones (``--limit-queries``) unless asked. Folders of the older layout
(``<Task>_<subtask>/summary.json`` directly) are still read.

Nothing here imports mteb at module level: ``table`` and ``compare`` stay instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
HASH_LENGTH = 10
NO_REVISION = "no_revision_available"  # mteb's folder name for a model without a pinned revision
MTEB_RESULTS = "results"  # mteb's ResultCache keeps its results under <cache>/results/

# rank1_eval's defaults: a run whose settings all equal these is the plain (non-experiment) result in mteb's
# layout; every other setting becomes one of mteb's experiment kwargs (run-level ones added by the driver).
RUN_DEFAULTS: dict[str, Any] = {"top_k": 100, "limit_queries": None, "first_stage": "default", "main_metric": None}


class ResultsError(ValueError):
    """No usable result folder where one was asked for; the message says what exists and what to pass."""


class ResultFolderError(ResultsError):
    """A result folder that is not whole (missing, truncated or mixed files): the message says how to rebuild it."""


def safe_name(name: str) -> str:
    """A model id as one folder name: never nested folders from the ``/`` in an id."""
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name.strip("/")) or "model"


def model_folder_name(model: str) -> str:
    """The folder the driver writes a model's results to (the mteb meta name, made safe); no mteb import."""
    if os.path.isdir(model):
        name = f"local/{os.path.basename(os.path.normpath(model))}"
    elif "/" in model:
        name = model
    else:
        name = f"local/{model}"
    return safe_name(name)


# ----------------------------------------------------------------------------------------------------
# naming
# ----------------------------------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """JSON-stable form: floats that are whole stay floats, NaN/inf become strings, paths become strings."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """The first :data:`HASH_LENGTH` hex digits of the sha256 of the settings as canonical JSON."""
    payload = json.dumps(_canonical(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def _token(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "", str(value)) or "x"


def run_folder_name(settings: Mapping[str, Any]) -> str:
    """``top100[-first2]-<prompt set>[-noprompt]-out<budget>-<dtype>-<engine>-<hash>``: readable, hash decides."""
    parts = [f"top{_token(settings.get('top_k'))}"]
    if settings.get("limit_queries") is not None:
        parts.append(f"first{_token(settings['limit_queries'])}")
    if settings.get("kind") == "mteb-cross-encoder":  # a baseline: no prompt set, budget or dtype of its own
        return "-".join([*parts, "mteb", settings_hash(settings)])
    parts.append(_token(settings.get("prompt_set", "code")))
    if settings.get("dataset_prompt") is False:
        parts.append("noprompt")
    elif isinstance(settings.get("dataset_prompt"), str):
        parts.append("ownprompt")
    parts += [
        f"out{_token(settings.get('max_output_tokens'))}",
        _token(settings.get("dtype")),
        _token(settings.get("engine")),
    ]
    return "-".join(parts + [settings_hash(settings)])


def task_dir(output_dir: str | os.PathLike[str], model_name: str, task_label: str) -> Path:
    """``<output_dir>/<model>/<Task>_<subtask>``: every run of one model on one task (subset) lives below it."""
    return Path(output_dir) / safe_name(model_name) / task_label


def run_folder(
    output_dir: str | os.PathLike[str], model_name: str, task_label: str, settings: Mapping[str, Any]
) -> Path:
    """THE name of a run's result folder; the driver writes there and nowhere else."""
    return task_dir(output_dir, model_name, task_label) / run_folder_name(settings)


def run_tag(model_name: str, first_stage: str, top_k: int | None, settings: Mapping[str, Any]) -> str:
    """A TREC run tag that tells runs apart in ranx/ir_measures: model, first stage, top-k and settings hash."""
    stage = re.sub(r"[^A-Za-z0-9._-]+", "-", first_stage).strip("-") or "first-stage"
    return f"{safe_name(model_name)}.{stage}.top{top_k}.{settings_hash(settings)}"


# ----------------------------------------------------------------------------------------------------
# finding
# ----------------------------------------------------------------------------------------------------


REBUILD_HINT = (
    "rebuild it by running the `rank1-eval run` command that wrote it again: every judgement is in the store, "
    "so nothing is scored again"
)


SUMMARY_MARKS = ("settings", "provenance")  # every summary rank1_eval wrote has one of them (older ones: provenance)


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json as a dict; anything else is a :class:`ResultFolderError` saying how to rebuild it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        what = f"{exc.msg}, line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise ResultFolderError(f"{path} is truncated or not JSON ({what}); {REBUILD_HINT}") from None
    except OSError as exc:
        raise ResultFolderError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ResultFolderError(f"{path} is not a rank1_eval summary (a JSON object); {REBUILD_HINT}")
    if not any(isinstance(data.get(k), Mapping) for k in SUMMARY_MARKS):  # `{}`, another tool's JSON
        what = "empty" if not data else f"keys: {', '.join(sorted(map(str, data))[:5])}"
        raise ResultFolderError(
            f"{path} is not a rank1_eval summary ({what}; it has no {' or '.join(SUMMARY_MARKS)}); {REBUILD_HINT}"
        )
    return data


@dataclass(frozen=True)
class RunFolder:
    """One run's result folder as readers see it: its path and summary.json."""

    path: Path
    summary: dict[str, Any]

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunFolder | None:
        """The run at ``path``, or None when it holds no summary.json (not a finished run)."""
        p = Path(path)
        return cls(p, read_summary(p / SUMMARY_FILE)) if (p / SUMMARY_FILE).is_file() else None

    @property
    def settings(self) -> dict[str, Any]:
        """The settings the folder name was hashed from (older folders: the few their provenance kept)."""
        settings = self.summary.get("settings")
        if isinstance(settings, Mapping):
            return dict(settings)
        prov = self.summary.get("provenance") or {}
        sampling = prov.get("sampling") or {}
        keys = (
            "model",
            "revision",
            "engine",
            "dtype",
            "prompt_set",
            "dataset_prompt",
            "task",
            "subtask",
            "subset",
            "split",
            "top_k",
            "limit_queries",
        )
        return {**{k: prov.get(k) for k in keys if k in prov}, **sampling}

    @property
    def hash(self) -> str | None:
        return self.summary.get("settings_hash")

    @property
    def limit_queries(self) -> int | None:
        value = self.settings.get("limit_queries", (self.summary.get("provenance") or {}).get("limit_queries"))
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def partial(self) -> bool:
        """A smoke run over the first queries only: its metrics are not the task's."""
        return self.limit_queries is not None

    @property
    def finished(self) -> float:
        """When the run's summary was written (seconds since the epoch): newest wins among equals."""
        return (self.path / SUMMARY_FILE).stat().st_mtime

    def describe(self) -> str:
        return f"{self.path.name} (partial: --limit-queries {self.limit_queries})" if self.partial else self.path.name


def list_runs(folder: str | os.PathLike[str]) -> list[RunFolder]:
    """Every finished run under a task folder (``<model>/<Task>_<subtask>``), oldest first.

    A folder of the older layout (summary.json directly in the task folder) counts as one run.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    runs = [  # hidden folders are a writer's temporary ones (rank1_eval.outputs swaps them in when whole)
        r for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".") and (r := RunFolder.read(p))
    ]
    legacy = RunFolder.read(root)
    if legacy is not None:
        runs.append(legacy)
    return sorted(runs, key=lambda r: (r.finished, r.path.name))


def _matches(run: RunFolder, key: str, wanted: Any) -> bool:
    if key == "hash":
        return bool(run.hash) and str(run.hash).startswith(str(wanted))
    settings = run.settings
    if key not in settings:
        return False
    have = settings[key]
    if isinstance(wanted, str) and not isinstance(have, str):
        return json.dumps(have) == wanted or str(have) == wanted or (have is None and wanted.lower() == "none")
    return have == wanted


def _differing(runs: Sequence[RunFolder]) -> list[str]:
    keys = sorted({k for r in runs for k in r.settings})
    return [k for k in keys if len({json.dumps(r.settings.get(k), sort_keys=True, default=str) for r in runs}) > 1]


@dataclass(frozen=True)
class Choice:
    """What :func:`choose_run` picked (None: nothing usable) and a one-line note for the reader, if any."""

    run: RunFolder | None
    note: str | None = None


def choose_run(
    runs: Iterable[RunFolder],
    *,
    prefer: Mapping[str, Any] | None = None,
    where: Mapping[str, Any] | None = None,
    allow_partial: bool = False,
) -> Choice:
    """The run a reader should use: complete before partial, ``prefer`` settings before others, newest last.

    ``where``: settings every candidate must have (``{"prompt_set": "paper", "hash": "3f2a"}``).
    ``prefer``: settings a candidate should have (a table column's top-k); others are used with a note.
    Partial runs (``--limit-queries``) are refused unless ``allow_partial``; the note then says so.
    """
    candidates = [r for r in runs if all(_matches(r, k, v) for k, v in (where or {}).items())]
    if not candidates:
        return Choice(None)
    complete = [r for r in candidates if not r.partial]
    if not complete and not allow_partial:
        smoke = ", ".join(sorted({f"--limit-queries {r.limit_queries}" for r in candidates}))
        return Choice(None, f"only partial runs ({smoke}); pass --allow-partial to use them")
    pool = complete or candidates
    notes = []
    preferred = [r for r in pool if all(_matches(r, k, v) for k, v in (prefer or {}).items())]
    if prefer and not preferred:
        got = pool[-1]
        off = [f"{k} {got.settings.get(k)} (wanted {v})" for k, v in prefer.items() if not _matches(got, k, v)]
        notes.append(", ".join(off))
    pool = preferred or pool
    chosen = pool[-1]
    if chosen.partial:
        notes.append(f"partial run (--limit-queries {chosen.limit_queries})")
    if len(pool) > 1:
        differ = _differing(pool)
        notes.append(
            f"{len(pool)} runs differ in {', '.join(differ[:4]) or 'settings'}; the newest is used "
            f"({chosen.path.name}): narrow with --where KEY=VALUE"
        )
    return Choice(chosen, "; ".join(n for n in notes if n) or None)


def resolve_run_folder(
    path: str | os.PathLike[str], *, allow_partial: bool = False, where: Mapping[str, Any] | None = None
) -> Path:
    """A run folder from what a user typed: the run folder itself, or a task folder holding exactly one
    complete run (several: the error lists them; only partial ones: refused unless ``allow_partial``)."""
    p = Path(path)
    if (p / SUMMARY_FILE).is_file() and not where:
        return p
    runs = [r for r in list_runs(p) if all(_matches(r, k, v) for k, v in (where or {}).items())]
    if not runs:
        if not p.is_dir():
            raise ResultsError(f"{p} is not a result folder (no such folder)")
        raise ResultsError(f"{p} is not a result folder (no {SUMMARY_FILE} in it or in a run folder below it)")
    complete = [r for r in runs if not r.partial]
    if not complete and not allow_partial:
        listed = ", ".join(r.describe() for r in runs)
        raise ResultsError(f"{p} holds only partial runs ({listed}): pass --allow-partial or the run folder itself")
    pool = complete or runs
    measured = [r for r in pool if "derived_from" not in r.summary]  # a sweep's budgets beside the run it cut
    if len(pool) > 1 and len(measured) == 1:
        log.info(
            "%s: using %s, the run the sweep's %d budget folder(s) were derived from (name one to read it)",
            p,
            measured[0].path.name,
            len(pool) - 1,
        )
        return measured[0].path
    if len(pool) > 1:
        listed = ", ".join(r.path.name for r in pool)
        raise ResultsError(
            f"{p} holds {len(pool)} runs that differ in {', '.join(_differing(pool)[:4]) or 'settings'} ({listed}): "
            "pass one of them"
        )
    return pool[0].path


def find_runs(results: str | os.PathLike[str]) -> list[RunFolder]:
    """Every finished run under an ``--output-dir`` (``<model>/<Task>_<subtask>/<run>/``, older layout too).

    An empty folder, or one holding no rank1_eval result, is a :class:`ResultsError`: wherever a result is
    expected, nothing found is an error, not an empty answer.
    """
    root = Path(results)
    if not root.is_dir():
        raise ResultsError(f"results folder {root} does not exist")
    runs = [
        r
        for model in sorted(root.iterdir())
        if model.is_dir() and not model.name.startswith(".") and model.name != MTEB_RESULTS
        for task in sorted(model.iterdir())
        if task.is_dir()
        for r in list_runs(task)
    ]
    if not runs:
        raise ResultsError(
            f"{root} holds no rank1_eval result folder (expected <model>/<Task>_<subtask>/<run>/{SUMMARY_FILE}): "
            "pass the --output-dir of a `rank1-eval run`"
        )
    return runs


# ----------------------------------------------------------------------------------------------------
# mteb's ResultCache layout
# ----------------------------------------------------------------------------------------------------


def experiment_kwargs(settings: Mapping[str, Any], model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """mteb experiment kwargs of a run: the model's non-default settings plus run settings off the defaults."""
    out = dict(model_kwargs)
    for key, default in RUN_DEFAULTS.items():
        value = settings.get(key, default)
        if value != default:
            out[key] = value
    return out


def mteb_result_path(root: str | os.PathLike[str], meta: Any, task_name: str) -> Path:
    """Where mteb's ``ResultCache(root)`` looks for this result (``meta``: a ModelMeta with experiment kwargs)."""
    from rank1_eval.mteb_compat import result_cache

    cache = result_cache(root)
    return cache.get_task_result_path(
        task_name,
        meta.model_name_as_path(),
        model_revision=meta.revision or NO_REVISION,
        experiment_name=meta.experiment_name,
    )


def export_to_mteb(root: str | os.PathLike[str], task_result: Any, meta: Any) -> Path:
    """Write ``task_result`` where ``mteb.ResultCache(root).load_results()`` finds it, with ``model_meta.json``.

    Results of other subsets of the same task and settings (BRIGHT's domains, mFollowIR's languages) are merged
    into the one ``<Task>.json`` as mteb keeps them; a subset evaluated again replaces its old scores.
    """
    from rank1_eval.mteb_compat import task_result_class

    TaskResult = task_result_class()  # noqa: N806 -- the class, under mteb's name
    path = mteb_result_path(root, meta, task_result.task_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = task_result
    if path.is_file():
        try:
            old = TaskResult.from_disk(path)
            result = old.merge(task_result) if old.is_mergeable(task_result) else task_result
        except Exception as exc:  # noqa: BLE001 -- an unreadable old file is replaced, and said
            log.warning("replacing unreadable %s (%s: %s)", path, type(exc).__name__, exc)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    result.to_disk(tmp)
    os.replace(tmp, path)
    meta_tmp = path.parent / f".model_meta.json.{os.getpid()}.tmp"
    meta_tmp.write_text(json.dumps(meta.to_dict(), default=str, indent=4), encoding="utf-8")
    os.replace(meta_tmp, path.parent / "model_meta.json")
    return path
