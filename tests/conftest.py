"""Shared fixtures: paths of the bundled test models and tokenizers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
MICRO_RANK1 = FIXTURES / "micro-rank1"
QWEN25_TOKENIZER = FIXTURES / "qwen25-tokenizer"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
