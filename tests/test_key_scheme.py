"""Stores of the previous key scheme (rank1_eval before RULE_VERSION): refused in one line, or re-keyed exactly.

``fixtures/legacy-store-main.sqlite`` and ``legacy-store-main-vllm.sqlite`` were written by main at 3a8b6fd (the
last commit of the old scheme): ``rank1-eval run --engine transformers|vllm --device cpu --limit-queries 1`` on the
bundled demo and micro rank1 (20 pairs each). Judgements of the old scheme are RULE_VERSION 2's: under 3 the
Transformers engine decodes without the checkpoint's generation_config, so only the vLLM store can be re-keyed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from conftest import FIXTURES

from rank1_eval.cli import main
from rank1_eval.store import KEY_SCHEME, SQLiteStore, StoreKeySchemeError, merge_stores

LEGACY = FIXTURES / "legacy-store-main.sqlite"
LEGACY_VLLM = FIXTURES / "legacy-store-main-vllm.sqlite"
DEMO = ["--device", "cpu", "--limit-queries", "1"]


@pytest.fixture
def legacy(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(LEGACY, path)
    return path


@pytest.fixture
def legacy_vllm(tmp_path):
    pytest.importorskip("vllm")
    path = tmp_path / "old-vllm.sqlite"
    shutil.copy(LEGACY_VLLM, path)
    return path


def _scheme(path) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'key_scheme'").fetchone()
    return row and row[0]


def test_new_stores_are_marked_and_old_ones_refused_in_one_line(tmp_path, legacy):
    with SQLiteStore(tmp_path / "new.sqlite"):
        pass
    assert _scheme(tmp_path / "new.sqlite") == str(KEY_SCHEME)
    with pytest.raises(StoreKeySchemeError) as info:
        SQLiteStore(legacy)
    message = str(info.value)
    assert "\n" not in message and "holds 20 judgements keyed by the previous key scheme" in message
    assert "rank1-eval store migrate" in message
    assert _scheme(legacy) is None  # refused without a byte written
    with pytest.raises(StoreKeySchemeError):  # never silently mixed into a store of today's keys
        merge_stores(tmp_path / "new.sqlite", [legacy])


def test_migrate_refuses_judgements_todays_rule_decodes_differently(tmp_path, legacy, capsys):
    assert (
        main(
            ["store", "migrate", str(legacy), "--into", str(tmp_path / "new.sqlite"), "--engine", "transformers", *DEMO]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot be reused, only rerun" in err and "transformers engine" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new.sqlite").exists()


def test_migrate_rekeys_exactly_what_the_runs_flags_make(tmp_path, legacy_vllm, capsys):
    new = tmp_path / "new.sqlite"
    flags = ["--engine", "vllm", *DEMO]
    assert main(["store", "migrate", str(legacy_vllm), "--into", str(new), "--max-output-tokens", "32", *flags]) == 0
    assert "20 judgements read, 0 re-keyed, 0 already there, 20 not re-keyable" in capsys.readouterr().out
    assert main(["store", "migrate", str(legacy_vllm), "--into", str(new), *flags]) == 0
    assert "20 judgements read, 20 re-keyed, 0 already there, 0 not re-keyable" in capsys.readouterr().out
    assert _scheme(legacy_vllm) is None and _scheme(new) == str(KEY_SCHEME)
    # the demo rerun on the migrated store: every pair a store hit, nothing scored (no engine loaded)
    out = tmp_path / "results"
    assert main(["run", *flags, "--store", str(new), "--output-dir", str(out), "--no-progress", "-q"]) == 0
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    assert (summary["pairs_from_store"], summary["pairs_scored"]) == (20, 0)
