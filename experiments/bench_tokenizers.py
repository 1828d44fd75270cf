"""Benchmark lmjax's tokenizers against HF `tokenizers`, `sentencepiece` and `tiktoken`.

Trains BPE and WordPiece to 8,000 tokens on tiny-shakespeare and Don Quijote (first 90%
of each file), times them against HF's BpeTrainer / WordPieceTrainer and SentencePiece on
the same text, compares compression (UTF-8 bytes per token) on the held-out last 10%, and
measures GPT-2 encoding throughput against tiktoken built from gpt2.tiktoken on disk.
Every ratio printed is measured in this run.

    LMJAX_DATA_DIR=../shared/data python experiments/bench_tokenizers.py
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import sentencepiece
import tiktoken
import tokenizers as hf
from tiktoken.load import load_tiktoken_bpe

from lmjax.tokenizers import BPETokenizer, SentencePieceTokenizer, WordPieceTokenizer
from lmjax.tokenizers.bpe import END_OF_TEXT, GPT2_PATTERN
from lmjax.tokenizers.wordpiece import BERT_SPECIAL_TOKENS

CORPORA = {
    "tiny-shakespeare": "tinyshakespeare/input.txt",
    "quijote": "multilingual/es_quijote_gutenberg2000.txt",
}


def best_time(build: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Fastest of `repeats` runs (the machine is shared), and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = build()
        times.append(time.perf_counter() - start)
    return min(times), result


def hf_bpe(train_file: Path, vocab_size: int) -> hf.Tokenizer:
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = hf.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_TEXT], show_progress=False,
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train([str(train_file)], trainer)
    return tok


def hf_wordpiece(train_file: Path, vocab_size: int) -> hf.Tokenizer:
    tok = hf.Tokenizer(hf.models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = hf.normalizers.BertNormalizer(handle_chinese_chars=False, lowercase=False)
    tok.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    trainer = hf.trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(BERT_SPECIAL_TOKENS), show_progress=False
    )
    tok.train([str(train_file)], trainer)
    return tok


def spm_train(train_file: Path, vocab_size: int, model_type: str) -> sentencepiece.SentencePieceProcessor | str:
    """SentencePiece with its usual settings, or why it refused."""
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=str(train_file), model_writer=model, vocab_size=vocab_size, model_type=model_type,
            character_coverage=1.0, byte_fallback=True, minloglevel=2, num_threads=os.cpu_count(),
        )
    except RuntimeError as err:
        return str(err).strip().splitlines()[-1]
    return sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())


def bytes_per_token(text: str, count: int) -> float:
    return len(text.encode("utf-8")) / count


def bench_corpus(name: str, path: Path, vocab_size: int, repeats: int, workdir: Path) -> None:
    text = path.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    train_file, held_out = workdir / f"{name}.train.txt", text[cut:]
    train_file.write_text(text[:cut], encoding="utf-8")
    print(f"\n## {name}: train {cut:,} chars, held-out {len(held_out):,} chars, vocab {vocab_size:,}")

    ours_s, ours = best_time(lambda: BPETokenizer.train([train_file], vocab_size, progress=False), repeats)
    hf_s, theirs = best_time(lambda: hf_bpe(train_file, vocab_size), repeats)
    ours_bpt = bytes_per_token(held_out, len(ours.encode(held_out)))
    hf_bpt = bytes_per_token(held_out, len(theirs.encode(held_out).ids))
    print(f"BPE        train: lmjax {ours_s:6.2f} s | HF {hf_s:6.2f} s | ratio {ours_s / hf_s:5.2f}x (target <= 5x)")
    print(f"BPE        held-out bytes/token: lmjax {ours_bpt:.3f} | HF {hf_bpt:.3f} | "
          f"difference {100 * (ours_bpt / hf_bpt - 1):+.2f}% (target within 2%)")

    ours_s, ours = best_time(lambda: WordPieceTokenizer.train([train_file], vocab_size, progress=False), repeats)
    hf_s, theirs = best_time(lambda: hf_wordpiece(train_file, vocab_size), repeats)
    ours_bpt = bytes_per_token(held_out, len(ours.encode(held_out)))
    hf_bpt = bytes_per_token(held_out, len(theirs.encode(held_out, add_special_tokens=False).ids))
    print(f"WordPiece  train: lmjax {ours_s:6.2f} s | HF {hf_s:6.2f} s | ratio {ours_s / hf_s:5.2f}x")
    print(f"WordPiece  held-out bytes/token: lmjax (score F(ij)/F(i)F(j)) {ours_bpt:.3f} | "
          f"HF (merges by frequency) {hf_bpt:.3f} | difference {100 * (ours_bpt / hf_bpt - 1):+.2f}%")

    for model_type in ("bpe", "unigram"):
        spm_s, spm = best_time(partial(spm_train, train_file, vocab_size, model_type), 1)
        if isinstance(spm, str):
            print(f"SentencePiece {model_type:7s} refused: {spm}")
            continue
        spm_bpt = bytes_per_token(held_out, len(spm.encode(held_out)))
        print(f"SentencePiece {model_type:7s} train {spm_s:6.2f} s, held-out bytes/token {spm_bpt:.3f}")
    ours_s, _ = best_time(lambda: SentencePieceTokenizer.train([train_file], vocab_size, model_type="unigram"), 1)
    print(f"SentencePiece unigram through lmjax (identity normalization, newline piece) train {ours_s:6.2f} s")


def bench_encoding(data_dir: Path, repeats: int) -> None:
    text = "".join((data_dir / rel).read_text(encoding="utf-8") for rel in CORPORA.values())
    megabytes = len(text.encode("utf-8")) / 1e6
    folder = data_dir / "gpt2_bpe"
    ranks = load_tiktoken_bpe(str(folder / "gpt2.tiktoken"))
    reference = tiktoken.Encoding("gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                                  special_tokens={END_OF_TEXT: 50256})
    cold_s, ours = best_time(lambda: BPETokenizer.from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe")
                             .encode(text), 1)
    gpt2 = BPETokenizer.from_gpt2_files(folder / "encoder.json", folder / "vocab.bpe")
    gpt2.encode(text)
    warm_s, _ = best_time(lambda: gpt2.encode(text), repeats)
    tiktoken_s, theirs = best_time(lambda: reference.encode_ordinary(text), repeats)
    assert ours == theirs, "lmjax and tiktoken disagree on GPT-2 ids"
    print(f"\n## GPT-2 encoding, {megabytes:.2f} MB (both corpora), one thread, identical ids")
    print(f"lmjax cold cache (load + encode) {megabytes / cold_s:6.2f} MB/s")
    print(f"lmjax warm cache {megabytes / warm_s:6.2f} MB/s | tiktoken {megabytes / tiktoken_s:6.2f} MB/s | "
          f"lmjax/tiktoken {tiktoken_s / warm_s:.2f}x")


def main() -> None:
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LMJAX_DATA_DIR", default_data)))
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per trainer; the fastest counts")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; HF tokenizers {hf.__version__}, sentencepiece {sentencepiece.__version__}, "
          f"tiktoken {tiktoken.__version__}")
    with tempfile.TemporaryDirectory() as workdir:
        for name, rel in CORPORA.items():
            bench_corpus(name, args.data_dir / rel, args.vocab_size, args.repeats, Path(workdir))
    bench_encoding(args.data_dir, args.repeats)


if __name__ == "__main__":
    main()
