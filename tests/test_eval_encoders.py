"""T5 and BERT scoring against independent references on random transformers models.

T5: the harness's own seq2seq backend (HFLM, backend="seq2seq") scores the same token-id
requests on the same weights. BERT: pseudo-log-likelihood (Salazar et al. 2020) computed
here with transformers' BertForMaskedLM, one masked copy per scored token.
"""

import shutil

import numpy as np
import pytest

lm_eval = pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from lm_eval.models.huggingface import HFLM  # noqa: E402

from lmjax.eval.scorers import PseudoLogLikelihoodScorer, Seq2SeqScorer  # noqa: E402
from lmjax.runs import open_run  # noqa: E402

VOCAB = 120


def random_pairs(seed, count, max_context=40, max_continuation=6, low=3):
    rng = np.random.default_rng(seed)
    return [(rng.integers(low, VOCAB, rng.integers(1, max_context)).tolist(),
             rng.integers(low, VOCAB, rng.integers(1, max_continuation)).tolist())
            for _ in range(count)]


def test_t5_scores_equal_the_harness_seq2seq_backend(tmp_path, data_dir):
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    transformers.T5ForConditionalGeneration(config).eval().save_pretrained(tmp_path / "t5")
    tokenizer_dir = tmp_path / "tokenizer"  # the harness needs one; requests below are ids
    tokenizer_dir.mkdir()
    shutil.copy(data_dir / "gpt2_bpe" / "encoder.json", tokenizer_dir / "vocab.json")
    shutil.copy(data_dir / "gpt2_bpe" / "vocab.bpe", tokenizer_dir / "merges.txt")
    transformers.GPT2TokenizerFast.from_pretrained(tokenizer_dir).save_pretrained(tokenizer_dir)
    run = open_run(tmp_path / "t5")
    pairs = random_pairs(0, 12)
    ours = Seq2SeqScorer(run.model, run.params, run.config, batch_size=4).score(pairs)
    harness = HFLM(pretrained=str(tmp_path / "t5"), tokenizer=str(tokenizer_dir), backend="seq2seq",
                   batch_size=4, device="cpu", dtype="float32")
    theirs = harness._loglikelihood_tokens([((None, None), c, x) for c, x in pairs], disable_tqdm=True)
    np.testing.assert_allclose([s for s, _ in ours], [s for s, _ in theirs], rtol=1e-4)
    assert [g for _, g in ours] == [g for _, g in theirs]


def test_bert_pseudo_log_likelihood_equals_masked_lm_reference(tmp_path):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=64)
    model = transformers.BertForMaskedLM(config).eval()
    model.save_pretrained(tmp_path / "bert")
    run = open_run(tmp_path / "bert")
    cls_id, sep_id, mask_id = 0, 1, 2
    pairs = random_pairs(1, 6, max_context=20, max_continuation=5)
    ours = PseudoLogLikelihoodScorer(run.model, run.params, run.config, batch_size=8,
                                     cls_id=cls_id, sep_id=sep_id, mask_id=mask_id).score(pairs)
    for (context, continuation), (score, greedy) in zip(pairs, ours):
        tokens = [cls_id, *context, *continuation, sep_id]
        total, all_greedy = 0.0, True
        for k in range(len(continuation)):
            position = 1 + len(context) + k
            masked = list(tokens)
            masked[position] = mask_id
            with torch.inference_mode():
                logits = model(torch.tensor([masked])).logits[0, position]
            total += torch.log_softmax(logits, -1)[tokens[position]].item()
            all_greedy &= int(logits.argmax()) == tokens[position]
        assert score == pytest.approx(total, rel=1e-4)
        assert greedy == all_greedy
