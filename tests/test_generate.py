"""`lmjax generate`: the llama2.c reference, prompts, lmjax run directories and bad input."""

import json

import pytest

from lmjax import config as config_lib
from lmjax.runs.importers import llama2c
from lmjax.cli import main
from lmjax.decoding import Generator, Sampling
from lmjax.errors import ConfigError
from lmjax.generate import generate
from lmjax.models import build_model
from lmjax.tokenizers import SentencePieceTokenizer


@pytest.fixture(scope="module")
def stories(data_dir):
    folder = data_dir / "stories260K"
    reference = json.loads((folder / "greedy_reference.json").read_text())
    return folder / "stories260K.bin", folder / "tok512.model", reference


def _run_cli(capsys, *args):
    code = main(["generate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_reproduces_the_llama2c_greedy_reference(stories, capsys):
    checkpoint, tokenizer, reference = stories
    code, out, _ = _run_cli(capsys, "--checkpoint", checkpoint, "--tokenizer", tokenizer,
                            "--max-new-tokens", 200, "--temperature", 0, "--ids")
    assert code == 0
    assert json.loads(out) == reference["generated_ids"]
    decoded = SentencePieceTokenizer.from_file(tokenizer).decode(reference["generated_ids"])
    assert decoded == reference["generated_text"]  # what the CLI prints without --ids


@pytest.mark.smoke
def test_prompt_continues_greedily_like_llama2c(stories):
    """The reference's first sentence as a prompt: BOS + its SentencePiece ids are exactly the
    reference's first 15 tokens, so the greedy continuation is the reference's remainder."""
    checkpoint, tokenizer, reference = stories
    prompt = "Once upon a time, there was a little girl named Lily."
    result = generate(checkpoint, tokenizer, prompt, 40, Sampling(temperature=0), use_cache=False)
    assert result.prompt_ids == [1] + reference["generated_ids"][:15]
    assert result.generated_ids == reference["generated_ids"][15:55]
    assert result.text.startswith(prompt + " She loved to play")


def test_sampling_is_reproducible_for_a_seed(stories):
    checkpoint, _, _ = stories
    config, params = llama2c.load(checkpoint)
    generator = Generator(build_model(config), params, Sampling(temperature=1.0, top_k=40, top_p=0.9))
    first, again, other = (generator.generate([1], 30, seed=seed)[0] for seed in (5, 5, 6))
    assert first == again and first != other


def _assert_one_line_error(code, err, *fragments):
    assert code == 2 and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


def test_tokenizer_of_another_vocabulary_size(stories, tmp_path, capsys):
    checkpoint, tokenizer, _ = stories
    bigger = SentencePieceTokenizer.from_file(tokenizer, extra_ids=4).save(tmp_path / "tok516")
    code, _, err = _run_cli(capsys, "--checkpoint", checkpoint, "--tokenizer", bigger)
    _assert_one_line_error(code, err, "has 516 ids but the model's vocabulary is 512")


def test_prompt_longer_than_the_context(stories, capsys):
    checkpoint, tokenizer, _ = stories
    code, _, err = _run_cli(capsys, "--checkpoint", checkpoint, "--tokenizer", tokenizer,
                            "--prompt", "Lily and Tom played. " * 100)
    _assert_one_line_error(code, err, "the model's context is 512", "shorten the prompt")


def test_a_bert_model_is_refused_before_its_parameters_are_read(tmp_path, capsys):
    """An export of bert_tiny whose params/ is empty: refused for its architecture, which
    shows the check comes before any parameter is read."""
    (tmp_path / "config.yaml").write_text(config_lib.to_yaml(config_lib.load_config("bert_tiny")))
    (tmp_path / "params").mkdir()
    code, _, err = _run_cli(capsys, "--checkpoint", tmp_path)
    _assert_one_line_error(code, err, "holds a bert model", "decoder (gpt) or an encoder-decoder (t5)")


@pytest.mark.parametrize("count", ["-1", "-100"])
def test_a_negative_max_new_tokens_is_a_one_line_error(stories, capsys, count):
    checkpoint, tokenizer, _ = stories
    code, out, err = _run_cli(capsys, "--checkpoint", checkpoint, "--tokenizer", tokenizer,
                              "--max-new-tokens", count)
    _assert_one_line_error(code, err, f"--max-new-tokens={count} must be >= 0")
    assert out == ""


def test_zero_new_tokens_gives_the_prompt_back(stories):
    checkpoint, tokenizer, _ = stories
    result = generate(checkpoint, tokenizer, "Once upon a time", 0, Sampling(temperature=0))
    assert result.generated_ids == [] and result.text == "Once upon a time"


def test_t5_answers_the_encoder_prompt_like_transformers(stories, tmp_path, capsys):
    """A transformers T5 directory with llama2.c's SentencePiece model as --tokenizer: the
    prompt's ids then EOS go to the encoder, the decoder starts from pad id 0, and the greedy
    ids are transformers' own."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    _, tokenizer_path, _ = stories
    tokenizer = SentencePieceTokenizer.from_file(tokenizer_path)
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=512, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=tokenizer.eos_id)
    hf_model = transformers.T5ForConditionalGeneration(config).eval()
    hf_model.save_pretrained(tmp_path / "t5")
    prompt = "Lily and Tom played in the park."
    code, out, _ = _run_cli(capsys, "--checkpoint", tmp_path / "t5", "--tokenizer", tokenizer_path,
                            "--prompt", prompt, "--max-new-tokens", 12, "--temperature", 0,
                            "--ids", "--no-stop")
    encoder_ids = tokenizer.encode_ordinary(prompt) + [tokenizer.eos_id]
    with torch.inference_mode():
        expected = hf_model.generate(torch.tensor([encoder_ids]), max_new_tokens=12, min_new_tokens=12,
                                     do_sample=False)[0, 1:].tolist()
    assert code == 0 and json.loads(out) == expected


def test_cli_generates_from_a_converted_gpt2_like_transformers(stories, tmp_path, capsys):
    """An export of `lmjax convert hf`, with its tokenizer/ as the default, decodes greedily to
    transformers' own greedy tokens."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    _, tokenizer, _ = stories
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=512, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    hf_model = transformers.GPT2LMHeadModel(config).eval()
    hf_model.save_pretrained(tmp_path / "hf")
    assert main(["convert", "hf", str(tmp_path / "hf"), str(tmp_path / "export")]) == 0
    capsys.readouterr()
    SentencePieceTokenizer.from_file(tokenizer).save(tmp_path / "export" / "tokenizer")  # the default
    code, out, _ = _run_cli(capsys, "--checkpoint", tmp_path / "export", "--max-new-tokens", 20,
                            "--temperature", 0, "--ids", "--no-stop")
    with torch.inference_mode():
        expected = hf_model.generate(torch.tensor([[1]]), max_new_tokens=20, min_new_tokens=20,
                                     do_sample=False, pad_token_id=0)[0, 1:].tolist()
    assert code == 0 and json.loads(out) == expected


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_temperature_is_a_one_line_error(stories, capsys, value):
    checkpoint, tokenizer, _ = stories
    code, out, err = _run_cli(capsys, "--checkpoint", checkpoint, "--tokenizer", tokenizer,
                              "--temperature", value, "--max-new-tokens", 3)
    _assert_one_line_error(code, err, f"--temperature={value} must be a finite number")
    assert out == ""


def test_a_non_finite_temperature_is_refused_by_the_library_too(stories):
    checkpoint, tokenizer, _ = stories
    with pytest.raises(ConfigError, match="temperature=nan must be a finite number"):
        generate(checkpoint, tokenizer, "", 3, Sampling(temperature=float("nan")))


def test_a_prompt_that_is_not_utf8_is_a_one_line_error(stories, capsys):
    """What a shell passes for $'\\xff\\xfe': Python decodes argv with surrogateescape."""
    checkpoint, tokenizer, _ = stories
    prompt = b"Lily \xff\xfe".decode("utf-8", "surrogateescape")
    code, out, err = _run_cli(capsys, "--checkpoint", checkpoint, "--tokenizer", tokenizer,
                              "--prompt", prompt, "--max-new-tokens", 3)
    _assert_one_line_error(code, err, "--prompt is not UTF-8 text", "byte 0xff at position 5")
    assert out == ""
