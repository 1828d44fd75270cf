"""Training throughput of lmjax's BERT and T5 against transformers' PyTorch BertForMaskedLM
and T5ForConditionalGeneration of identical shape, on the same batches.

Batches come from lmjax's own objectives (masked LM, span corruption) over random tokens;
the peer gets the same ids with -100 labels where lmjax's weights are zero. Both use AdamW
with gradient clipping and no dropout; steps alternate between the two so machine drift
cancels, and medians are compared. Tokens/s counts input tokens (batch × data.seq_len).

    python experiments/bench_encoders.py --config bert_tiny --steps 12
    python experiments/bench_encoders.py --config t5_tiny --steps 12
    python experiments/bench_encoders.py --config bert_base train.global_batch_size=8 --steps 6
    python experiments/bench_encoders.py --config t5_small data.seq_len=128 \
        train.global_batch_size=8 --steps 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from bench_train import XLA_PRESETS, lmjax_trainer, time_alternating

SPECIALS = {"pad": 0, "eos": 1, "cls": 2, "sep": 3, "mask": 4}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="bert_tiny", help="a BERT or T5 config")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each framework")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--xla-flags", choices=sorted(XLA_PRESETS), default="default")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser.parse_args()


def make_objective(config):
    from lmjax.objectives import MaskedLM, SpanCorruption

    vocab = config.model.vocab_size
    if config.model.arch == "bert":
        return MaskedLM(mask_id=SPECIALS["mask"], vocab_size=vocab,
                        special_ids=tuple(SPECIALS.values()), pad_id=SPECIALS["pad"],
                        cls_id=SPECIALS["cls"], sep_id=SPECIALS["sep"])
    return SpanCorruption(seq_len=config.data.seq_len, vocab_end=vocab, eos_id=SPECIALS["eos"],
                          pad_id=SPECIALS["pad"])


def make_batch(config, objective) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    length = objective.window_length(config.data.seq_len)
    windows = rng.integers(len(SPECIALS), config.model.vocab_size - 200,
                           (config.train.global_batch_size, length))
    examples = [objective.make_example(window, rng) for window in windows]
    return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def torch_peer(config):
    """The transformers model with lmjax's shape and no dropout."""
    import transformers

    m = config.model
    if m.arch == "bert":
        return transformers.BertForMaskedLM(transformers.BertConfig(
            vocab_size=m.vocab_size, hidden_size=m.d_model, num_hidden_layers=m.n_layers,
            num_attention_heads=m.n_heads, intermediate_size=m.d_ff,
            max_position_embeddings=m.max_len, type_vocab_size=m.type_vocab_size,
            hidden_act="gelu" if m.mlp == "gelu_exact" else "gelu_new", layer_norm_eps=m.norm_eps,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        ))
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=m.vocab_size, d_model=m.d_model, d_kv=m.d_head, d_ff=m.d_ff,
        num_layers=m.n_layers, num_decoder_layers=m.decoder_layers, num_heads=m.n_heads,
        relative_attention_num_buckets=m.relpos_buckets,
        relative_attention_max_distance=m.relpos_max_distance, dropout_rate=0.0,
        layer_norm_epsilon=m.norm_eps, feed_forward_proj="gated-gelu" if m.mlp == "geglu" else "relu",
        tie_word_embeddings=m.tie_embeddings,
    ))


def peer_labels(config, batch):
    """transformers' labels: the targets where lmjax predicts, -100 (ignored) elsewhere."""
    import numpy as np

    if config.model.arch == "t5":
        return np.where(batch["weights"] > 0, batch["targets"], -100)
    labels = np.full(batch["input_ids"].shape, -100)
    rows, slots = np.nonzero(batch["weights"])
    labels[rows, batch["masked_positions"][rows, slots]] = batch["targets"][rows, slots]
    return labels


def torch_trainer(config, objective, batch):
    import torch

    torch.manual_seed(0)
    peer = torch_peer(config)
    peer.train()
    optimizer = torch.optim.AdamW(peer.parameters(), lr=config.train.lr,
                                  betas=(config.train.b1, config.train.b2),
                                  weight_decay=config.train.weight_decay)
    inputs = {k: torch.from_numpy(v).long() for k, v in objective.model_inputs(batch).items()}
    labels = torch.from_numpy(peer_labels(config, batch)).long()
    inputs.pop("masked_positions", None)  # transformers predicts every position

    def run_step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = peer(**inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(peer.parameters(), config.train.grad_clip)
        optimizer.step()
        return loss.item()

    return run_step


def main() -> int:
    args = parse_args()
    os.environ["XLA_FLAGS"] = " ".join(
        filter(None, [os.environ.get("XLA_FLAGS", ""), XLA_PRESETS[args.xla_flags]])
    )
    from lmjax.config import load_config

    config = load_config(args.config, args.overrides)
    if config.model.arch not in ("bert", "t5"):
        print(f"{args.config} is a {config.model.arch} config: use experiments/bench_train.py",
              file=sys.stderr)
        return 2
    objective = make_objective(config)
    batch = make_batch(config, objective)
    ours, n_params = lmjax_trainer(config, objective, batch)
    runners = {"lmjax": ours, "pytorch": torch_trainer(config, objective, batch)}
    times = time_alternating(runners, args.warmup, args.steps)

    batch_size, seq_len = config.train.global_batch_size, config.data.seq_len
    print(f"config {args.config} {' '.join(args.overrides)} | XLA flags: {args.xla_flags} | "
          f"{n_params:,} params | batch {batch_size}×{seq_len} | {objective.loss_name}")
    rates = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        rates[name] = batch_size * seq_len / median
        print(f"{name:8s} median step {median * 1e3:8.1f} ms  {rates[name]:10.0f} tokens/s")
    print(f"ratio lmjax/pytorch tokens/s: {rates['lmjax'] / rates['pytorch']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
