"""The GPU check's two inference measurements, each one process of `gpu_bench.py`:

- decode: lmjax's cached greedy decoding (`lmjax.decoding.Generator`) of a GPT preset with
  random weights in bfloat16, `--batch` rows of 128 prompt tokens, `--new-tokens` new ones;
  tokens/s over the timed second call (the first compiles).
- scorer: the eval harness's rolling log-likelihood through lmjax's `LmjaxLM` against the
  harness's own `HFLM` (PyTorch), the same random GPT-2-shaped weights and the same texts: the
  repository's own docs, under a byte-level BPE trained on them by `tokenizers`, so the check
  needs no download and no data directory. Tokens/s of each, their ratio, and the largest
  relative difference of the scores.
"""

from __future__ import annotations

import glob
import pathlib
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
# GPT-2 small as released but for the vocabulary (the BPE trained below); tiny for --tiny.
SCORER_SHAPES = {"full": {"n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024},
                 "tiny": {"n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 128}}


def decode_record(args, config) -> dict:
    """`config`: the preset's (or tiny) ModelConfig in bfloat16."""
    import jax
    import numpy as np

    from lmjax.decoding import Generator, Sampling
    from lmjax.models import build_model

    model = build_model(config)
    prompt_len = min(128, config.max_len // 2)
    prompts = np.random.default_rng(0).integers(0, config.vocab_size, (args.batch, prompt_len))
    params = jax.jit(model.init)(jax.random.key(0), input_ids=prompts[:1])["params"]
    generator = Generator(model, params, Sampling(temperature=0))
    generator.generate(prompts, args.new_tokens)  # compiles
    start = time.perf_counter()
    new = generator.generate(prompts, args.new_tokens)
    seconds = time.perf_counter() - start
    produced = sum(len(row) for row in new)
    return {"kind": "decode", "preset": "tiny" if args.tiny else args.preset,
            "run": "lmjax greedy, key/value cache", "batch": args.batch,
            "prompt_tokens": prompt_len, "new_tokens": args.new_tokens,
            "tokens_per_s": produced / seconds, "device": jax.devices()[0].device_kind,
            "versions": f"jax {jax.__version__}"}


def docs_texts(tiny: bool) -> list[str]:
    """Paragraph groups of the repository's markdown, a few hundred words each."""
    words = []
    for path in sorted(glob.glob(str(ROOT / "docs" / "**" / "*.md"), recursive=True)):
        words += pathlib.Path(path).read_text(encoding="utf-8").split()
    size, count = (60, 2) if tiny else (700, 16)
    return [" ".join(words[i * size:(i + 1) * size]) for i in range(count)]


def write_gpt2(directory: pathlib.Path, texts: list[str], tiny: bool) -> None:
    """A random GPT-2 and a byte-level BPE trained on `texts`, as a transformers directory
    with GPT-2's vocab.json and merges.txt, which both lmjax and HFLM read."""
    import tokenizers
    import torch
    import transformers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=512 if tiny else 4096, min_frequency=1,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    directory.mkdir(parents=True)
    bpe.save_model(str(directory))
    transformers.GPT2TokenizerFast.from_pretrained(directory).save_pretrained(directory)
    torch.manual_seed(0)
    shape = SCORER_SHAPES["tiny" if tiny else "full"]
    config = transformers.GPT2Config(vocab_size=bpe.get_vocab_size(), bos_token_id=0,
                                     eos_token_id=0, **shape)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(directory)


def timed_scores(model, batch) -> tuple[list[float], float]:
    """A warm-up pass (compiles, warms allocators), then the timed pass's scores and seconds."""
    model.loglikelihood_rolling(batch, disable_tqdm=True)
    start = time.perf_counter()
    scores = model.loglikelihood_rolling(batch, disable_tqdm=True)
    return scores, time.perf_counter() - start


def scorer_record(args) -> dict:
    import jax
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from lmjax.eval import LmjaxLM

    texts = docs_texts(args.tiny)
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp) / "gpt2"
        write_gpt2(directory, texts, args.tiny)
        batch = [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(text,), idx=i)
                 for i, text in enumerate(texts)]
        ours = LmjaxLM(str(directory), batch_size=4)
        theirs = HFLM(pretrained=str(directory), batch_size=4, device="cuda" if cuda else "cpu",
                      dtype="bfloat16" if cuda else "float32")
        tokens = sum(len(ours.tok_encode(text, add_special_tokens=False)) for text in texts)
        our_scores, our_seconds = timed_scores(ours, batch)
        their_scores, their_seconds = timed_scores(theirs, batch)
    difference = max(abs(a - b) / abs(b) for a, b in zip(our_scores, their_scores))
    return {"kind": "scorer", "preset": "tiny" if args.tiny else "gpt2-small",
            "run": "LmjaxLM vs HFLM, loglikelihood_rolling", "documents": len(texts),
            "tokens": tokens, "tokens_per_s": tokens / our_seconds,
            "hflm_tokens_per_s": tokens / their_seconds, "ratio": their_seconds / our_seconds,
            "max_relative_difference": difference, "device": jax.devices()[0].device_kind,
            "versions": f"jax {jax.__version__}, torch {torch.__version__}",
            "hflm_device": "cuda" if cuda else "cpu"}
