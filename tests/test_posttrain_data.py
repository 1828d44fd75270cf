"""The verifiable task's reward and the jsonl layouts: round trips and one-line errors."""

import json

import numpy as np
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


def synthetic_samples(n_prompts=60, k=4, seed=0):
    """Stories that use their prompt's word at a random place, or another task word, or none."""
    rng = np.random.default_rng(seed)
    prompts = datasets.task_prompts(n_prompts, seed)
    texts, rewards = [], []
    for index, prompt in enumerate(prompts):
        word = task.word_in(prompt[0][1])
        row = []
        for j in range(k):
            other = task.WORDS[(task.WORDS.index(word) + 1 + j) % len(task.WORDS)]
            filler = ["the", "girl", "ran", "far", "and", "saw", "a", other][: 3 + int(rng.integers(6))]
            if rng.random() < 0.5:
                filler.insert(int(rng.integers(len(filler) + 1)), word)
            row.append(f"{' '.join(filler)} {index} {j}.")
        texts.append(row)
        rewards.append([task.reward(text, word) for text in row])
    return datasets.PreferenceSamples(prompts, texts, np.array(rewards))


def test_all_pairs_take_every_differing_pair_of_a_prompt_with_the_better_chosen():
    samples = synthetic_samples()
    pairs = datasets.all_pairs(samples)
    expected = sum(int((row[:, None] > row[None, :]).sum()) for row in samples.rewards)
    assert len(pairs) == expected > len(datasets.best_worst_pairs(samples))
    owner = {text: index for index, texts in enumerate(samples.texts) for text in texts}
    for pair in pairs:
        assert owner[pair.chosen] == owner[pair.rejected] and samples.prompts[owner[pair.chosen]] == pair.prompt
        word = task.word_in(pair.prompt[0][1])
        assert task.reward(pair.chosen, word) > task.reward(pair.rejected, word)


def test_word_split_and_cross_prompt_pairs_keep_prompts_apart():
    samples = synthetic_samples(n_prompts=120)
    train, seen, unseen, words = datasets.split_by_word(samples, 4, 0.125, seed=1)
    assert len(words) == 4 and sorted(train + seen + unseen) == list(range(120))
    assert not set(train) & set(seen) and not set(train) & set(unseen) and not set(seen) & set(unseen)
    instruction = {i: samples.prompts[i][0][1] for i in range(120)}
    train_instructions = {instruction[i] for i in train}
    assert not train_instructions & {instruction[i] for i in unseen}  # held-out words never trained on
    assert all(task.word_in(instruction[i]) in words for i in unseen) and seen
    for indices in (train, seen, unseen):
        part = samples.subset(indices)
        part_prompts = {instruction[i] for i in indices}
        part_texts = {text for texts in part.texts for text in texts}
        other_texts = {text for i in set(range(120)) - set(indices) for text in samples.texts[i]}
        cross = datasets.cross_prompt_pairs(part, 2, seed=0)
        assert cross
        for pair in cross:
            word = task.word_in(pair.prompt[0][1])
            assert pair.prompt[0][1] in part_prompts
            assert pair.chosen in part_texts and pair.rejected in part_texts and pair.rejected not in other_texts
            assert task.reward(pair.chosen, word) > task.reward(pair.rejected, word) == 0.0
            own = samples.texts[next(i for i in indices if pair.chosen in samples.texts[i])]
            assert pair.rejected not in own  # another prompt's sample
        assert {pair.prompt[0][1] for pair in datasets.all_pairs(part)} <= part_prompts
