"""Architecture FLOPs (`lmjax.scaling.flops`) against XLA's own count of the compiled
training step, and against the closed forms they reduce to. Compile only: nothing runs."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmjax.config import ModelConfig, TrainConfig, presets
from lmjax.models import build_model
from lmjax.objectives import make_objective
from lmjax.scaling import flops_per_token_6n_attention, forward_flops, train_flops
from lmjax.train.optimizer import learning_rate_schedule, make_optimizer
from lmjax.train.step import make_train_step

VOCAB = 4096
SEQ_LEN = 128
BATCH = 4
# Widths where matmuls dominate, each case exercising what a naive count gets wrong.
CASES = {
    # Llama-style: 8 query heads sharing 2 kv heads of 48 (not 256/8), SwiGLU, untied head,
    # causal attention in 4 blocks that skip the masked ones.
    "gpt": (ModelConfig(arch="gpt", vocab_size=VOCAB, d_model=256, n_layers=2, n_heads=8,
                        n_kv_heads=2, head_dim=48, d_ff=768, max_len=SEQ_LEN, norm="rmsnorm",
                        position="rope", mlp="swiglu", use_bias=False, tie_embeddings=False,
                        attention_blocks=4),
            lambda: make_objective("causal_lm")),
    # BERT: the MLM transform and output head only at the masked positions.
    "bert": (ModelConfig(arch="bert", vocab_size=VOCAB, d_model=256, n_layers=2, n_heads=4,
                         d_ff=1024, max_len=SEQ_LEN, norm_eps=1e-12, mlp="gelu_exact"),
             lambda: make_objective("masked_lm", vocab_size=VOCAB, mask_id=3,
                                    special_ids=(0, 1, 2, 3), pad_id=0, cls_id=1, sep_id=2)),
    # T5 v1.1-style: 1 encoder and 2 decoder layers, 6 heads of 64 (384 wide), gated GELU,
    # cross-attention whose keys and values are the 128 encoder tokens.
    "t5": (ModelConfig(arch="t5", vocab_size=VOCAB, d_model=256, n_layers=1, n_decoder_layers=2,
                       n_heads=6, head_dim=64, d_ff=768, max_len=SEQ_LEN, norm="rmsnorm",
                       position="relative", mlp="geglu", use_bias=False, tie_embeddings=False),
           lambda: make_objective("span_corruption", pad_id=0, seq_len=SEQ_LEN, vocab_end=VOCAB,
                                  eos_id=1)),
}


def example_batch(objective, rng: np.random.Generator) -> dict[str, np.ndarray]:
    windows = rng.integers(5, VOCAB - 200, (BATCH, objective.window_length(SEQ_LEN)))
    examples = [objective.make_example(window, rng) for window in windows]
    return {key: np.stack([example[key] for example in examples]) for key in examples[0]}


def xla_train_step_flops(model_config: ModelConfig, objective, batch) -> float:
    """XLA's cost analysis of the project's jitted training step, compiled from shapes only."""
    model = build_model(model_config)
    train = TrainConfig()
    optimizer = make_optimizer(train)

    def init(key):
        params = nn.unbox(model.init(key, **objective.model_inputs(batch))["params"])
        return {"step": jnp.zeros((), jnp.int32), "params": params,
                "opt_state": optimizer.init(params)}

    state = jax.eval_shape(init, jax.random.key(0))
    step = make_train_step(model, objective, optimizer, learning_rate_schedule(train))
    return jax.jit(step).lower(state, batch).compile().cost_analysis()["flops"]


def test_xla_counts_a_matmul_as_2mnk():
    """So its count and ours compare without a conversion factor."""
    a = jax.ShapeDtypeStruct((64, 96), jnp.float32)
    b = jax.ShapeDtypeStruct((96, 32), jnp.float32)
    assert jax.jit(jnp.matmul).lower(a, b).compile().cost_analysis()["flops"] == 2 * 64 * 96 * 32


@pytest.mark.parametrize("arch", sorted(CASES))
def test_train_flops_match_xla_cost_analysis(arch):
    """XLA also counts the elementwise work (norms, softmax, activations, loss, AdamW) that
    the architecture count leaves out, so it is at least ours and, at these widths, close."""
    model_config, make = CASES[arch]
    objective = make()
    batch = example_batch(objective, np.random.default_rng(0))
    ours = train_flops(model_config, objective.model_inputs(batch))
    xla = xla_train_step_flops(model_config, objective, batch)
    assert 1.0 <= xla / ours < 1.10, (arch, xla, ours)


def test_gpt2_reduces_to_the_palm_closed_form():
    """With full causal attention, GPT-2's count per token is exactly 6N + 12·L·d·T, N being
    the matmul weights: 12·L·d² in the blocks plus the tied V×d output layer."""
    config = ModelConfig(**presets()["gpt2-124m"])
    length = 1024
    per_token = train_flops(config, {"input_ids": (2, length)}) / (2 * length)
    n_matmul = 12 * 12 * 768**2 + 50257 * 768
    assert per_token == flops_per_token_6n_attention(n_matmul, 12, 768, length)


def test_blocked_attention_counts_only_the_blocks_it_scores():
    """One block per query scores exactly the T(T+1)/2 causal pairs instead of T²; a padding
    mask takes the full-score path."""
    config = ModelConfig(**presets()["gpt2-124m"])
    length, heads_width, layers = 64, 768, 12
    full = forward_flops(config, {"input_ids": (1, length)})
    per_query = forward_flops(dataclasses.replace(config, attention_blocks=length),
                              {"input_ids": (1, length)})
    skipped_pairs = length * length - length * (length + 1) // 2
    assert full - per_query == 4 * skipped_pairs * heads_width * layers
    padded = {"input_ids": (1, length), "attention_mask": (1, length)}
    assert forward_flops(dataclasses.replace(config, attention_blocks=length), padded) == full


def test_bert_head_runs_only_at_masked_positions():
    config = ModelConfig(**presets()["bert-base"])
    everywhere = forward_flops(config, {"input_ids": (1, 128)})
    masked = forward_flops(config, {"input_ids": (1, 128), "masked_positions": (1, 20)})
    assert everywhere - masked == 2 * (128 - 20) * 768 * (768 + 30522)
