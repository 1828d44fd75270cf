"""Total training compute C and PF-days, and the GPT-3 paper's compute table (Table D.1).

Brown et al. (2020), Table D.1, counts training FLOPs as (FLOPs per parameter per token) ×
N × D with N the model's nominal parameter count: 6 for decoders and encoders (2 forward,
×3 with the backward pass) and 3 for the encoder-decoder T5, of whose parameters half are
active for each token (a token runs through the encoder or the decoder). `estimate` applies
that convention to a config's counted N, and beside it the more exact count from the
architecture (`lmjax.scaling.flops`: the attention scores and values, the output head where it
runs, T5's cross-attention), so one sees what the 6·N·D shorthand leaves out.
"""

from __future__ import annotations

import dataclasses

from lmjax.config import ModelConfig, preset_model
from lmjax.scaling.flops import train_flops
from lmjax.scaling.params import param_counts

PF_DAY = 1e15 * 24 * 3600  # 8.64e19 FLOP
MLM_PREDICTED_SHARE = 0.15  # BERT and RoBERTa predict 15% of the positions


@dataclasses.dataclass(frozen=True)
class TableRow:
    """One row of Table D.1 as published."""

    model: str
    preset: str
    params_millions: float
    tokens_billions: float
    flops_per_param_per_token: int
    total_flops: float
    pf_days: float


# Brown et al. (2020), "Language Models are Few-Shot Learners", Table D.1.
TABLE_D1 = (
    TableRow("T5-Small", "t5-small", 60, 1000, 3, 1.80e20, 2.08e0),
    TableRow("T5-Base", "t5-base", 220, 1000, 3, 6.60e20, 7.64e0),
    TableRow("T5-Large", "t5-large", 770, 1000, 3, 2.31e21, 2.67e1),
    TableRow("T5-3B", "t5-3b", 3000, 1000, 3, 9.00e21, 1.04e2),
    TableRow("T5-11B", "t5-11b", 11000, 1000, 3, 3.30e22, 3.82e2),
    TableRow("BERT-Base", "bert-base", 109, 250, 6, 1.64e20, 1.89e0),
    TableRow("BERT-Large", "bert-large", 355, 250, 6, 5.33e20, 6.16e0),
    TableRow("RoBERTa-Base", "roberta-base", 125, 2000, 6, 1.50e21, 1.74e1),
    TableRow("RoBERTa-Large", "roberta-large", 355, 2000, 6, 4.26e21, 4.93e1),
    TableRow("GPT-3 Small", "gpt3-small", 125, 300, 6, 2.25e20, 2.60e0),
    TableRow("GPT-3 Medium", "gpt3-medium", 356, 300, 6, 6.41e20, 7.42e0),
    TableRow("GPT-3 Large", "gpt3-large", 760, 300, 6, 1.37e21, 1.58e1),
    TableRow("GPT-3 XL", "gpt3-xl", 1320, 300, 6, 2.38e21, 2.75e1),
    TableRow("GPT-3 2.7B", "gpt3-2.7b", 2650, 300, 6, 4.77e21, 5.52e1),
    TableRow("GPT-3 6.7B", "gpt3-6.7b", 6660, 300, 6, 1.20e22, 1.39e2),
    TableRow("GPT-3 13B", "gpt3-13b", 12850, 300, 6, 2.31e22, 2.68e2),
    TableRow("GPT-3 175B", "gpt3-175b", 174600, 300, 6, 3.14e23, 3.64e3),
)


def flops_per_param_per_token(model: ModelConfig) -> int:
    """Table D.1's convention: 3 for encoder-decoders (half the parameters active), else 6."""
    return 3 if model.arch == "t5" else 6


def exact_flops_per_token(model: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token from the architecture at sequence length `seq_len`.

    GPT: every position predicts. BERT: the MLM head runs at 15% of the positions. T5: the
    encoder and the decoder each see `seq_len` tokens, and a token is counted once in either
    stack, as Table D.1's "half the parameters active" does.
    """
    if model.arch == "t5":
        shapes = {"input_ids": (1, seq_len), "decoder_input_ids": (1, seq_len)}
        return train_flops(model, shapes) / (2 * seq_len)
    shapes = {"input_ids": (1, seq_len)}
    if model.arch == "bert":
        shapes["masked_positions"] = (1, max(1, round(MLM_PREDICTED_SHARE * seq_len)))
    return train_flops(model, shapes) / seq_len


def estimate(model: ModelConfig, tokens: float, seq_len: int | None = None) -> dict:
    """Parameters, FLOPs per token, total FLOPs and PF-days for training on `tokens` tokens,
    in Table D.1's convention, with the exact architecture count beside it."""
    counts = param_counts(model)
    per_param = flops_per_param_per_token(model)
    per_token = per_param * counts.total
    exact = exact_flops_per_token(model, seq_len or model.max_len)
    return {
        "params": counts.total,
        "non_embedding_params": counts.non_embedding,
        "flops_per_token": per_token,
        "total_flops": per_token * tokens,
        "pf_days": per_token * tokens / PF_DAY,
        "convention": f"{per_param}*N*D (GPT-3 Table D.1: {per_param} FLOPs per parameter per token"
                      f"{', half the parameters active' if per_param == 3 else ''})",
        "exact_flops_per_token": exact,
        "exact_total_flops": exact * tokens,
        "exact_seq_len": seq_len or model.max_len,
        "exact_vs_convention": exact / per_token - 1.0,
    }


def reproduce_table_d1() -> list[dict]:
    """Every row of Table D.1 recomputed: from the table's own N (its convention exactly) and
    from lmjax's count of the preset's parameters, with the exact count beside."""
    rows = []
    for row in TABLE_D1:
        model = preset_model(row.preset)
        tokens = row.tokens_billions * 1e9
        table_n = row.params_millions * 1e6
        ours = estimate(model, tokens)
        table_flops = row.flops_per_param_per_token * table_n * tokens
        rows.append({
            "model": row.model, "preset": row.preset, "tokens": tokens,
            "published_params": table_n, "published_flops": row.total_flops,
            "published_pf_days": row.pf_days,
            "flops": table_flops, "pf_days": table_flops / PF_DAY,
            "counted_params": ours["params"], "counted_flops": ours["total_flops"],
            "counted_pf_days": ours["pf_days"],
            "exact_flops": ours["exact_total_flops"],
            "exact_vs_convention": ours["exact_vs_convention"],
        })
    return rows
