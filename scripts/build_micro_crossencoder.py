"""Build the *micro CrossEncoder* test baseline into rank1_eval/data/micro-crossencoder/.

A tiny BertForSequenceClassification (hidden 32, 2 layers, 2 heads, num_labels=1, float32) with its own
WordPiece tokenizer (2,000 tokens, lower-cased) trained here on the passages of
shared/data/trec-dl19-subset, saved with sentence-transformers' ``CrossEncoder.save`` so mteb and
sentence-transformers load it as a CrossEncoder folder. It is trained for a few hundred AdamW steps on CPU to
score a (query, passage) pair by how many query words the passage contains (a surface cue, never the qrels),
so its scores differ between pairs and rank something; they mean nothing.

It exists so that tests run a real local CrossEncoder through ``rank1-eval run --model FOLDER`` (mteb's
CrossEncoderWrapper, sentence-transformers, transformers) with no download.

Usage (deterministic for a seed and thread count)::

    python scripts/build_micro_crossencoder.py [--out DIR] [--steps 300] [--seed 1234]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "rank1_eval" / "data" / "micro-crossencoder"
DATA = Path("/work/shared/data/trec-dl19-subset")
if not DATA.exists():
    DATA = ROOT.parent / "shared" / "data" / "trec-dl19-subset"
VOCAB_SIZE = 2000
MAX_LENGTH = 128


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2}


def overlap_label(query: str, passage: str) -> float:
    """The training target: the share of the query's words the passage contains (0..1)."""
    q = _words(query)
    return len(q & _words(passage)) / len(q) if q else 0.0


def build_tokenizer(texts: list[str]):  # noqa: ANN201 -- a transformers PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=special))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_LENGTH,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    corpus = [r["text"] for r in _read(DATA / "corpus.jsonl")]
    queries = [r["text"] for r in _read(DATA / "queries.jsonl")]
    tokenizer = build_tokenizer(corpus + queries)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_LENGTH,
        type_vocab_size=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = BertForSequenceClassification(config)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(args.steps):
        batch_q, batch_p, target = [], [], []
        for _ in range(16):
            query = rng.choice(queries)
            passage = rng.choice(corpus)
            if rng.random() < 0.5:  # half the pairs carry some of the query's words
                words = query.split()
                passage = " ".join(rng.sample(words, k=max(1, len(words) // 2))) + " " + passage
            batch_q.append(query)
            batch_p.append(passage)
            target.append(overlap_label(query, passage))
        enc = tokenizer(batch_q, batch_p, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
        logits = model(**enc).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(target))
        optim.zero_grad()
        loss.backward()
        optim.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.4f}")
    model.eval()
    if args.out.exists():
        shutil.rmtree(args.out)
    import tempfile

    with tempfile.TemporaryDirectory() as raw:  # transformers' folder, then saved again as a CrossEncoder
        model.save_pretrained(raw)
        tokenizer.save_pretrained(raw)
        cross = CrossEncoder(raw, max_length=MAX_LENGTH, device="cpu")
        cross.save(str(args.out))
    (args.out / "README.md").write_text(
        "# micro CrossEncoder (test baseline)\n\nBuilt by `scripts/build_micro_crossencoder.py "
        f"--steps {args.steps} --seed {args.seed}`: a {sum(p.numel() for p in model.parameters()):,}-parameter "
        "BertForSequenceClassification (num_labels=1) with a 2,000-token WordPiece tokenizer trained on the "
        "passages of trec-dl19-subset, trained to score the share of the query's words in the passage (a "
        "surface cue, never the qrels). Its scores mean nothing; it lets tests run a local CrossEncoder through "
        "`rank1-eval run` with no download.\n",
        encoding="utf-8",
    )
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
