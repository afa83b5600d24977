"""Which exceptions mean bad input or an unavailable resource (one clear line for the user, no stack trace).

The CLI prints these as ``rank1-eval: error: ...``; ``reproduce`` records them as a failed cell and goes on.
It lives below both so neither imports the other; the exception classes are imported when asked for.
"""

from __future__ import annotations


class UsageError(ValueError):
    """Flags that do not fit together (checked after the demo defaults are applied)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or an unavailable resource: one clear line, no stack trace."""
    from rank1_eval.beir import DatasetError
    from rank1_eval.compare import CompareError
    from rank1_eval.engines import EngineError
    from rank1_eval.engines.device import DeviceError
    from rank1_eval.layout import ResultsError
    from rank1_eval.model import ModelLoadError
    from rank1_eval.outputs import ResultFolderError
    from rank1_eval.paper.manifests import TableError
    from rank1_eval.preflight import OutputError, PromptBudgetError
    from rank1_eval.prompts import PromptError
    from rank1_eval.report.data import ReportError
    from rank1_eval.runs import RunFileError
    from rank1_eval.scoring import PromptTooLongError, ScoringError, TokenizerError
    from rank1_eval.store import StoreError
    from rank1_eval.sweep import SweepError
    from rank1_eval.tasks import TaskError
    from rank1_eval.texts import TextsError

    return (
        DatasetError,
        EngineError,
        DeviceError,
        ModelLoadError,
        PromptError,
        RunFileError,
        TokenizerError,
        StoreError,
        TaskError,
        FileNotFoundError,
        TableError,
        CompareError,
        ReportError,
        TextsError,
        ResultsError,
        ResultFolderError,
        OutputError,
        PromptBudgetError,
        PromptTooLongError,
        ScoringError,
        UsageError,
        SweepError,
    )
