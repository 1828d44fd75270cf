"""A random transformers Llama and Qwen2, saved with a byte-fallback BPE tokenizer.json, through
`lmjax convert from-hf` then `lmjax convert to-hf`: the tensors come back bit for bit (a
Qwen2 becomes a Llama with attention_bias, so it gains a zero o_proj bias), transformers'
logits on the export equal the original's, and AutoTokenizer encodes as the original's."""

import json

import numpy as np
import pytest
from hf_export_helpers import TEXTS, to_hf

from lmjax import cli
from lmjax.runs import open_run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("tokenizers")
from safetensors.numpy import load_file  # noqa: E402

SPECIALS = ("<unk>", "<s>", "</s>")
CORPUS = ["First Citizen: Before we proceed any further, hear me speak.",
          "All: Speak, speak. You are all resolved rather to die than to famish?"] * 30


def byte_fallback_bpe(directory):
    """A Llama-style BPE (SentencePiece's ▁ for spaces, <0xXX> byte tokens for what the
    merges do not cover, <s> before every text) trained with `tokenizers`; its vocabulary size."""
    trainer_model = hf.Tokenizer(hf.models.BPE(unk_token="<unk>"))
    trainer_model.normalizer = hf.normalizers.Replace(" ", "▁")
    trainer_model.train_from_iterator(CORPUS, hf.trainers.BpeTrainer(
        vocab_size=90, special_tokens=list(SPECIALS), show_progress=False))
    trained = json.loads(trainer_model.to_str())["model"]
    vocab = dict(trained["vocab"])
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    built = hf.Tokenizer(hf.models.BPE(vocab, merges, unk_token="<unk>", byte_fallback=True,
                                       fuse_unk=True))
    built.normalizer = hf.normalizers.Sequence([hf.normalizers.Prepend("▁"),
                                                hf.normalizers.Replace(" ", "▁")])
    built.decoder = hf.decoders.Sequence([hf.decoders.Replace("▁", " "), hf.decoders.ByteFallback(),
                                          hf.decoders.Fuse(), hf.decoders.Strip(" ", 1, 0)])
    built.add_special_tokens([hf.AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    built.post_processor = hf.processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                            special_tokens=[("<s>", 1)])
    built.save(str(directory / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
              "eos_token": "</s>", "unk_token": "<unk>"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return built.get_vocab_size()


MODELS = {  # a tied Llama; an untied Qwen2 with its q/k/v biases
    "llama": lambda vocab: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=500.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)),
    "qwen2": lambda vocab: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=vocab, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hf_to_lmjax_to_hf_keeps_tensors_logits_and_tokenizer(name, tmp_path):
    original_dir = tmp_path / "original"
    original_dir.mkdir()
    vocab = byte_fallback_bpe(original_dir)
    torch.manual_seed(len(name))
    original = MODELS[name](vocab).float().eval()
    with torch.no_grad():  # no tensor left at a value (zero, one) a mapping could invent
        for tensor in original.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.1)
    original.save_pretrained(original_dir)
    assert cli.main(["convert", "from-hf", str(original_dir), str(tmp_path / "lmjax")]) == 0
    assert open_run(tmp_path / "lmjax").tokenizer.kind == "hf"
    export = to_hf(tmp_path / "lmjax", tmp_path / "back")

    before, after = load_file(original_dir / "model.safetensors"), load_file(export / "model.safetensors")
    added = {f"model.layers.{i}.self_attn.o_proj.bias" for i in range(2)} if name == "qwen2" else set()
    assert set(after) == set(before) | added
    for key in added:
        assert not after[key].any(), key
    for key, value in before.items():
        assert after[key].dtype == value.dtype and np.array_equal(after[key], value), key
    config = json.loads((export / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["attention_bias"] == (name == "qwen2")
    generation = json.loads((export / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"]) == (1, 2)

    back = transformers.LlamaForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    ids = torch.tensor(np.random.default_rng(0).integers(0, vocab, (2, 11)))
    with torch.no_grad():
        assert np.max(np.abs(back(input_ids=ids).logits.numpy()
                             - original(input_ids=ids).logits.numpy())) <= 1e-5

    # The file itself: AutoTokenizer would take model_type qwen2 for Qwen2Tokenizer, which
    # rebuilds Qwen's own pre-tokenizer around the vocabulary instead of this tokenizer.json.
    theirs = transformers.PreTrainedTokenizerFast.from_pretrained(original_dir)
    ours = transformers.AutoTokenizer.from_pretrained(export)
    for text in [*TEXTS, "ꙮ unseen bytes"]:
        for special in (True, False):
            assert ours(text, add_special_tokens=special)["input_ids"] == theirs(
                text, add_special_tokens=special)["input_ids"], text
