"""The verifiable task's reward and the jsonl layouts: round trips and one-line errors."""

import json

import pytest

from lmjax.errors import ConfigError, DataError
from lmjax.posttrain import datasets, task
from lmjax.posttrain.examples import PreferencePair, SFTExample, user_prompt
from lmjax.posttrain.template import ChatTemplate


def test_reward_is_documented_function_of_first_use():
    story = "Tom had a red ball. The dog ran to the ball."  # 11 words, "dog" at index 6
    assert task.reward(story, "dog") == pytest.approx(0.5 + 0.5 * (1 - 6 / 11))
    assert task.reward("Dogs bark.", "dog") == 1.0  # plural, capitalised, first word
    assert task.reward("The doghouse was red.", "dog") == 0.0  # not the word
    assert task.word_in(task.instruction("kite")) == "kite"


def test_sft_jsonl_round_trips_in_both_layouts(tmp_path):
    examples = [SFTExample(user_prompt("Write a story about a dog."), "Once upon a time."),
                SFTExample((("system", "Be brief."), ("user", "Hi.")), "Hello.")]
    for chat in (False, True):
        path = tmp_path / f"sft_{chat}.jsonl"
        datasets.write_sft(path, examples, chat=chat)
        assert datasets.read_sft(path) == examples


def test_preference_jsonl_round_trips_and_reads_message_answers(tmp_path):
    pairs = [PreferencePair(user_prompt("Write a story about a cat."), "The cat sat.", "Tom ran.")]
    path = tmp_path / "prefs.jsonl"
    datasets.write_preferences(path, pairs)
    assert datasets.read_preferences(path) == pairs
    path.write_text(json.dumps({"prompt": "Q", "chosen": [{"role": "assistant", "content": "A"}],
                                "rejected": [{"role": "assistant", "content": "B"}]}) + "\n")
    assert datasets.read_preferences(path) == [PreferencePair(user_prompt("Q"), "A", "B")]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Q", "chosen": "A"}, "lacks 'rejected'"),
    ({"prompt": "Q", "chosen": "A", "rejected": "A"}, "chosen and rejected are identical"),
    ({"chosen": "A", "rejected": "B"}, "lacks 'prompt'"),
])
def test_bad_preference_lines_are_one_line_errors(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "chosen": "x", "rejected": "y"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message) as err:
        datasets.read_preferences(path)
    assert f"{path}:2" in str(err.value) and "\n" not in str(err.value)


def test_bad_sft_lines_are_one_line_errors(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n")
    with pytest.raises(DataError, match="must end with an assistant message"):
        datasets.read_sft(path)
    path.write_text(json.dumps({"prompt": "Hi"}) + "\n")
    with pytest.raises(DataError, match="lacks 'response'"):
        datasets.read_sft(path)


def test_chat_template_renders_turns_and_checks_itself():
    template = ChatTemplate(user="User: {content}\n", assistant="Bot: {content}\n")
    turns = (("user", "Hi"), ("assistant", "Hello"), ("user", "Story?"))
    assert template.prompt_text(turns) == "User: Hi\nBot: Hello\nUser: Story?\n"
    with pytest.raises(ConfigError, match="lacks"):
        ChatTemplate(user="no placeholder")
    with pytest.raises(ConfigError, match="end_token"):
        ChatTemplate(end_token="eot")
