"""The live display and the engine-log routing: honest rates and counts, the engines' flood kept off screen."""

from __future__ import annotations

import io
import logging
import warnings

from rank1_eval.logs import library_logs
from rank1_eval.progress import ProgressDisplay
from rank1_eval.records import Judgement


def _j(path: str, out: int, truncated: bool = False) -> Judgement:
    return Judgement(0.5, "r", path, 10, out, "length" if path != "pass1" else "stop", truncated=truncated)


def test_status_lines_then_a_bar_that_counts_only_this_runs_work():
    out = io.StringIO()  # not a terminal: one line per phase, with the time since the start
    display = ProgressDisplay(10, stream=out)
    display.status("loading task demo")
    display.status("loading model m (vllm engine)")
    lines = out.getvalue().splitlines()
    assert lines[0] == "loading task demo… [00:00]" and lines[1].startswith("loading model m (vllm engine)… [")
    display.engine_ready()
    display.from_store(4)  # moves the bar, but is neither judged nor generated
    display.judged(_j("pass2", 20, truncated=True))
    display.judged(_j("pass1", 5), pairs=2)  # one judgement answering two duplicate pairs
    display.judged(_j("failed", 7))
    assert display.judged_pairs == 4 and display.from_store_pairs == 4
    assert display.tokens == (20 + 1) + 5 + (7 + 1)  # pass-1 tokens, plus one per forced answer
    postfix = display.postfix()
    for part in ("pairs/s", "gen tok/s", "store 4", "pass2 1", "failed 1", "truncated 1"):
        assert part in postfix, postfix
    assert display.bar.n == 8
    display.close()
    assert "judging" in out.getvalue()


def test_derived_pairs_move_the_bar_but_never_count_as_decoded():
    """A sweep's budgets: pairs cut from the stored run are shown as derived, not in pairs/s or gen tok/s."""
    out = io.StringIO()
    display = ProgressDisplay(3, stream=out)
    display.engine_ready()
    display.derived(_j("pass2", 8), pairs=2)
    display.judged(_j("pass1", 5))
    assert display.judged_pairs == 1 and display.derived_pairs == 2 and display.tokens == 5
    assert display.bar.n == 3 and "derived 2" in display.postfix() and "pass2 2" in display.postfix()
    display.close()
    display.total = 3  # the next budget: a new bar counts from zero (not "pass2 600" beside 200/200)
    display.engine_ready()
    display.from_store(3)
    assert display.postfix().endswith("store 3, pass2 0, failed 0, truncated 0") and display.derived_pairs == 0
    display.close()


def test_status_without_bar_and_prefix():
    out = io.StringIO()
    display = ProgressDisplay(3, enabled=False, status=True, prefix="rank1-eval: ", stream=out)
    display.status("loading task t")
    display.engine_ready()
    display.judged(_j("pass1", 3))
    display.close()
    assert out.getvalue().startswith("rank1-eval: loading task t… [") and "judging" not in out.getvalue()


def test_disabled_display_writes_nothing():
    out = io.StringIO()
    display = ProgressDisplay(3, enabled=False, stream=out)
    display.status("loading")
    display.engine_ready()
    display.judged(_j("pass1", 3))
    display.close()
    assert out.getvalue() == ""


def test_library_logs_go_to_the_file_not_the_screen(tmp_path, capsys):
    log_file = tmp_path / "engine.log"
    with library_logs(log_file):
        logging.getLogger("vllm.engine").info("non-default args: {...}")
        logging.getLogger("vllm.platforms").warning("Triton is not installed")
        warnings.warn("a library's FutureWarning", FutureWarning, stacklevel=1)
    logging.getLogger("vllm.engine").warning("after the run")
    text = log_file.read_text()
    assert "non-default args" in text and "Triton is not installed" in text and "FutureWarning" in text
    assert "after the run" not in text
    err = capsys.readouterr().err
    assert "non-default args" not in err and "Triton" not in err


def test_verbose_leaves_library_logs_alone(tmp_path):
    with library_logs(tmp_path / "engine.log", verbose=True):
        logging.getLogger("vllm.engine").warning("on screen")
    assert not (tmp_path / "engine.log").exists()
