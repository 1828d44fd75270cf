"""The verifiable task: "Write a story about a {word}.", judged by a deterministic rule.

Preferences and rewards need a judge; this one needs no people. The reward of a story for
its word is 0 when the word does not occur, else 0.5 + 0.5·(1 − i/n), where i is the index
of the first occurrence among the story's n words: any use earns at least 0.5 and using the
word as the first word earns 1. A word occurs when a lowercased word of the story equals it
or its plural with "s" ("dog" matches "Dog," and "dogs", not "doghouse").
"""

from __future__ import annotations

import re

INSTRUCTION = "Write a story about a {word}."

# Nouns that stories260K's samples use (counted over its unconditional samples), so the
# base model can write about each of them.
WORDS = (
    "dog", "cat", "bird", "ball", "park", "tree", "car", "toy", "house", "garden",
    "box", "fish", "cake", "boat", "kite", "bear", "flower", "book", "hat", "frog",
    "duck", "apple", "truck", "bike", "doll", "cookie", "lion", "bunny", "slide", "shell",
)

_WORD_RE = re.compile(r"[a-z]+")


def instruction(word: str) -> str:
    """The instruction asking for a story about `word`."""
    return INSTRUCTION.format(word=word)


def story_words(story: str) -> list[str]:
    """The story's lowercased words (runs of letters)."""
    return _WORD_RE.findall(story.lower())


def first_use(story: str, word: str) -> int | None:
    """Index of the first word of `story` that is `word` or its plural, or None."""
    forms = {word.lower(), word.lower() + "s"}
    for index, token in enumerate(story_words(story)):
        if token in forms:
            return index
    return None


def reward(story: str, word: str) -> float:
    """0 without the word, else 0.5 + 0.5·(1 − i/n) (see the module docstring)."""
    index = first_use(story, word)
    if index is None:
        return 0.0
    return 0.5 + 0.5 * (1.0 - index / len(story_words(story)))


def word_in(prompt: str) -> str:
    """The word an instruction asks about (the last word of the prompt, without its period)."""
    found = story_words(prompt)
    return found[-1] if found else ""
