"""Build the *micro rank1* test model into rank1_eval/data/micro-rank1/.

A tiny Qwen2ForCausalLM (hidden 64, 2 layers, 2 heads of 32, 1 kv head, tied embeddings, float32) with its
own Qwen-style byte-level BPE tokenizer (4,000 BPE tokens + ``<think>``/``</think>`` as special added
tokens; ``<|endoftext|>`` is eos and pad), trained with AdamW on CPU to write rank1's output format after
rank1's prompt (docs/rule.md §3/§4)::

    <prompt ending in "<think>"> The query is a question. The passage has numbers. It looks relevant.
    </think> true<|endoftext|>

Its judgements mean nothing. It exists so that tests run the real pass-1 path (stop strings
``</think> true|false``, both answer tokens in the top-20 logprobs of the answer position) in vLLM and
transformers, with scores that differ between pairs and are never exactly 0 or 1.

Training data (all generated here from a fixed seed; BUILD.md in the output folder has the details):
- passages: synthetic English-like text from the word list below (10-200 words, half of them with
  numbers) and passage texts from shared/data/trec-dl19-subset/corpus.jsonl (MS MARCO, non-commercial
  research terms) *except* the held-out fifth (line index % 5 == 0) that scripts/check_micro_rank1.py
  evaluates on;
- queries: synthetic queries from templates filled with words of the paired passage, of another passage
  or of the word list, plus the 50 DL19 query texts paired with random passages. Qrels are never read;
- labels: a synthetic rule on two surface cues (see ``label_rule``), with label noise.

Usage (deterministic: the same seed and thread count give the same weights)::

    python scripts/build_micro_rank1.py [--out DIR] [--steps 1600] [--seed 1234] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import shutil
import time
from pathlib import Path

from rank1_eval.prompts import format_prompt  # the verbatim rank1 prompt (docs/rule.md §3), not a copy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "rank1_eval" / "data" / "micro-rank1"
DATA = Path("/work/shared/data/trec-dl19-subset")
if not DATA.exists():
    DATA = ROOT.parent / "shared" / "data" / "trec-dl19-subset"

EOS = "<|endoftext|>"
THINK, END_THINK = "<think>", "</think>"
VOCAB_SIZE = 4000  # BPE vocabulary incl. <|endoftext|>; <think>/</think> come on top
MODEL_VOCAB_MULTIPLE = 64  # embedding rows padded past len(tokenizer), as in real Qwen checkpoints
# Qwen2's pre-tokenization regex (a published fact of the Qwen2 tokenizer format).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)

STOPWORD_TEXT = """
a an the of to in on for and or but is are was were be been being it its this that these those with as
by at from into about than then there their they them he she his her we our you your i me my what which
who whom whose when where why how do does did done can could will would shall should may might must not
no yes so if also very more most some any all each other such only own same too just over under between
after before during while because up down out off again further once here both few many much per vs
define definition meaning mean used cause causes difference types type cost long invented
"""
STOPWORDS = set(STOPWORD_TEXT.split())
WORD_TEXT = """
water river mountain forest garden city village market school teacher student doctor nurse hospital
patient medicine disease virus bacteria cell blood heart brain muscle bone skin protein vitamin sugar
salt bread cheese coffee tea rice wheat corn apple orange lemon potato tomato onion garlic pepper
chicken beef fish shark whale bird eagle horse cattle sheep insect flea spider plant tree leaf root
flower seed soil rock sand stone metal iron copper gold silver steel glass plastic paper wood cotton
wool leather fabric engine motor car truck train plane ship boat bridge road tunnel airport station
harbor castle church tower house kitchen window door roof floor wall stair table chair bed lamp clock
phone computer software network signal radio camera screen battery cable wire circuit laser sensor robot
machine tool hammer knife needle law court judge lawyer contract tax price cost budget bank loan credit
salary market trade company factory worker manager office meeting project report design model theory
method experiment sample data energy power heat light sound wave pressure temperature weather climate
storm rain snow wind cloud ocean lake island desert valley coast planet moon star galaxy orbit gravity
atom molecule carbon oxygen hydrogen nitrogen acid enzyme gene tissue organ kidney liver lung stomach
nerve hormone insulin therapy surgery symptom fever pain infection vaccine diet exercise sleep stress
memory language grammar history culture music painting poem novel author artist festival holiday wedding
family child parent village nation government election president army soldier war peace treaty empire
king queen province border capital economy industry farming harvest fishing mining tourism transport
shipping railway highway traffic insurance pension benefit payment invoice account savings mortgage rent
lease property estate building concrete flooring tile marble cement brick timber paint varnish plumbing
heating cooling ventilation chemistry physics biology geology ecology astronomy mathematics geometry
algebra function equation triangle circle square angle volume surface length width height weight speed
distance direction ancient modern early late rapid slow large small heavy light bright dark warm cold
dry wet grow build measure produce reduce increase prevent cause treat cure protect connect deliver
repair
"""
WORDS = WORD_TEXT.split()
Q_TEMPLATES = [
    "what is {a}",
    "what is {a} {b}",
    "{a} {b} definition",
    "definition of {a}",
    "how to {a} {b}",
    "causes of {a} {b}",
    "difference between {a} and {b}",
    "{a} {b} {c}",
    "cost of {a} {b}",
    "what are the {a} of {b}",
    "how long does {a} {b}",
    "where is {a} {b}",
    "who invented {a}",
    "types of {a} {b}",
    "what does {a} mean",
    "is {a} a {b}",
    "{a} {b}",
    "why is {a} {b} {c}",
    "when was {a} {b}",
    "does {a} cause {b}",
    "what is {a} used for",
    "{a} {b} {c} {d}",
]
WORD_RE = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of length >= 3 that are not stopwords, in order, deduplicated."""
    seen: dict[str, None] = {}
    for w in WORD_RE.findall(text.lower()):
        if len(w) >= 3 and w not in STOPWORDS:
            seen.setdefault(w, None)
    return list(seen)


QUESTION_WORDS = {"what", "how", "who", "when", "where", "why", "which"}
VERDICTS = {  # (query is a question, passage has numbers) -> verdict sentence, P(label = true)
    (True, True): ("It looks relevant.", 0.85),
    (True, False): ("It looks uncertain.", 0.5),
    (False, True): ("It looks uncertain.", 0.5),
    (False, False): ("It looks unrelated.", 0.15),
}


def features(query: str, passage: str) -> tuple[bool, bool]:
    question = bool(QUESTION_WORDS & set(re.findall(r"[a-z]+", query.lower())))
    return question, any(ch.isdigit() for ch in passage)


def label_rule(query: str, passage: str, rng: random.Random) -> tuple[str, bool, tuple[bool, bool]]:
    """Synthetic judgement: three short sentences of reasoning and a noisy label, from two surface cues.

    Cues that a 2-layer, 64-wide model learns within the default 1,600 steps (it does not learn word
    overlap, which we tried first): whether the query is a question, and whether the passage contains
    digits. The last
    sentence's verdict sits right before ``</think>`` and sets P(label = true) to 0.85 / 0.5 / 0.15, so
    the answer probabilities stay away from 0 and 1.
    """
    key = features(query, passage)
    verdict, p_true = VERDICTS[key]
    why = (
        f" The query is {'a question' if key[0] else 'a phrase'}."
        f" The passage has {'numbers' if key[1] else 'no numbers'}. {verdict}\n"
    )
    return why, rng.random() < p_true, key


def synthetic_passage(rng: random.Random, n_words: int, topic: list[str], numbers: bool = True) -> str:
    glue = ["the", "of", "a", "is", "and", "in", "to", "for", "with", "are", "by", "on", "that", "its"]
    words: list[str] = []
    sentences: list[str] = []
    while len(words) < n_words:
        sent = []
        for _ in range(rng.randint(5, 14)):
            r = rng.random()
            if r < 0.35:
                sent.append(rng.choice(glue))
            elif r < 0.55 and topic:
                sent.append(rng.choice(topic))
            elif r < 0.6 and numbers:
                sent.append(str(rng.randint(1, 2024)))
            else:
                sent.append(rng.choice(WORDS))
        words.extend(sent)
        s = " ".join(sent)
        sentences.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", ",", ";", "!"]))
    return " ".join(sentences)


def synthetic_query(rng: random.Random, pool: list[str]) -> str:
    tmpl = rng.choice(Q_TEMPLATES)
    fill = {k: rng.choice(pool) for k in "abcd"}
    q = tmpl.format(**fill)
    if rng.random() < 0.15:
        q += "?"
    return q


def load_dl19() -> tuple[list[str], list[str], list[str]]:
    corpus = [json.loads(line) for line in (DATA / "corpus.jsonl").open(encoding="utf-8")]
    train = [d["text"] for i, d in enumerate(corpus) if i % 5 != 0]
    held_out = [d["text"] for i, d in enumerate(corpus) if i % 5 == 0]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open(encoding="utf-8")]
    return train, held_out, queries


def make_pairs(n: int, rng: random.Random, passages: list[str], queries: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35:  # synthetic passage
            topic = rng.sample(WORDS, 4)
            passage = synthetic_passage(rng, rng.randint(10, 200), topic, numbers=rng.random() < 0.5)
        else:  # real passage text (held-out fifth excluded)
            passage = rng.choice(passages)
        pw = content_words(passage) or WORDS
        other = content_words(rng.choice(passages)) or WORDS
        k = rng.random()
        if r >= 0.85:  # real DL19 query text with a random passage (no qrels)
            query = rng.choice(queries)
        elif k < 0.45:  # on-topic
            query = synthetic_query(rng, pw[:12])
        elif k < 0.7:  # mixed
            query = synthetic_query(rng, pw[:8] + other[:8])
        elif k < 0.85:  # off-topic (another passage)
            query = synthetic_query(rng, other[:12])
        else:  # off-topic (word list)
            query = synthetic_query(rng, WORDS)
        pairs.append((query, passage))
    return pairs


def train_tokenizer(texts: list[str]):
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(EOS, special=True, normalized=False)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (THINK, END_THINK)])
    return tok


def save_tokenizer(tok, out: Path) -> None:
    tok.save(str(out / "tokenizer.json"))
    decoder = {}
    for tid, at in sorted(tok.get_added_tokens_decoder().items()):
        decoder[str(tid)] = {
            "content": at.content,
            "lstrip": at.lstrip,
            "normalized": at.normalized,
            "rstrip": at.rstrip,
            "single_word": at.single_word,
            "special": at.special,
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
        "model_max_length": 4096,
        "additional_special_tokens": [THINK, END_THINK],
        "added_tokens_decoder": decoder,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the micro rank1 test model.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=1600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--answer-weight", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    t0 = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(args.seed)

    train_passages, _held_out, queries = load_dl19()
    # Equal shares of the four cue combinations, so that no verdict dominates.
    n_examples = args.steps * args.batch
    quota = {key: math.ceil(n_examples / 4) for key in VERDICTS}
    examples = []
    while len(examples) < n_examples:
        for query, passage in make_pairs(256, rng, train_passages, queries):
            why, label, key = label_rule(query, passage, rng)
            if quota[key] > 0 and len(examples) < n_examples:
                quota[key] -= 1
                examples.append((format_prompt(query, passage), why + END_THINK + (" true" if label else " false")))

    # Tokenizer: trained on the training texts (prompts + targets) and extra word-list prose.
    tok_texts = [p + t + EOS for p, t in examples[:4000]]
    tok_texts += train_passages + queries
    tok_texts += [synthetic_passage(rng, 60, []) for _ in range(500)]
    btok = train_tokenizer(tok_texts)

    tmp_out = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    save_tokenizer(btok, tmp_out)
    tok = AutoTokenizer.from_pretrained(str(tmp_out))
    for word in (" true", " false"):
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, (word, ids)
    for special in (THINK, END_THINK, EOS):
        assert len(tok(special, add_special_tokens=False).input_ids) == 1, special
    assert tok("x").input_ids == tok("x", add_special_tokens=False).input_ids, "tokenizer adds BOS/EOS"
    eos_id = tok.convert_tokens_to_ids(EOS)
    print(
        f"tokenizer: {len(tok)} tokens, ' true'={tok(' true').input_ids} ' false'={tok(' false').input_ids}"
        f" {THINK}={tok.convert_tokens_to_ids(THINK)} {END_THINK}={tok.convert_tokens_to_ids(END_THINK)}"
        f" ({time.time() - t0:.1f}s)"
    )

    # Tokenize examples; loss only on the target (+ EOS).
    seqs = []
    for prompt, target in examples:
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        t_ids = tok(target, add_special_tokens=False).input_ids + [eos_id]
        seqs.append((p_ids, t_ids))
    p0, t0_ids = seqs[0]
    assert tok(examples[0][0] + examples[0][1], add_special_tokens=False).input_ids == p0 + t0_ids[:-1]
    lengths = [len(p) + len(t) for p, t in seqs]
    print(
        f"{len(seqs)} examples, tokens/example mean {sum(lengths) / len(lengths):.0f} max {max(lengths)},"
        f" true share {sum(t.endswith(' true') for _, t in examples) / len(examples):.2f}"
    )

    vocab = math.ceil(len(tok) / MODEL_VOCAB_MULTIPLE) * MODEL_VOCAB_MULTIPLE
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    model = Qwen2ForCausalLM(config)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, vocab rows {vocab}")

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, args.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    # Length-bucketed batches (less padding): sort windows of 8 batches by length, then shuffle batches.
    order = list(range(len(seqs)))
    window = args.batch * 8
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(seqs[i][0]) + len(seqs[i][1]))
        batches += [chunk[j : j + args.batch] for j in range(0, len(chunk), args.batch)]
    rng.shuffle(batches)

    for step in range(args.steps):
        batch = [seqs[i] for i in batches[step]]
        width = max(len(p) + len(t) for p, t in batch)
        ids = torch.full((len(batch), width), eos_id, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (p, t) in enumerate(batch):
            n = len(p) + len(t)
            ids[row, :n] = torch.tensor(p + t)
            labels[row, len(p) : n] = torch.tensor(t)
            mask[row, :n] = 1
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        # Logits only where there is a target (the prompt positions carry no loss).
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != -100
        logits = model.lm_head(hidden[:, :-1][keep])
        losses = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="none")
        # Up-weight the answer token (the one before EOS): one noisy bit among ~20 template tokens.
        weight = torch.ones_like(labels, dtype=torch.float)
        for row, (p, t) in enumerate(batch):
            weight[row, len(p) + len(t) - 2] = args.answer_weight
        w = weight[:, 1:][keep]
        loss = (losses * w).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} lr {lr_at(step):.2e} ({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    model.config.dtype = "float32"
    model.save_pretrained(str(tmp_out), safe_serialization=True)
    GenerationConfig(bos_token_id=None, eos_token_id=eos_id, pad_token_id=eos_id, do_sample=False).save_pretrained(
        str(tmp_out)
    )
    build_md = args.out / "BUILD.md"  # hand-written record of a build: kept across rebuilds
    if build_md.exists():
        shutil.copy2(build_md, tmp_out / "BUILD.md")
    shutil.rmtree(args.out, ignore_errors=True)
    tmp_out.rename(args.out)
    weights = args.out / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    size = sum(f.stat().st_size for f in args.out.iterdir() if f.name != "BUILD.md")
    print(f"saved {args.out} ({size / 1e6:.2f} MB); model.safetensors sha256 {digest}")
    print(f"total wall time {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
