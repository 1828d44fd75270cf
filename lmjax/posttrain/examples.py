"""What post-training data is: prompt/response examples and preference pairs, as a
conversation before the response (so instruction and chat files mean the same thing)."""

from __future__ import annotations

import dataclasses

Turn = tuple[str, str]  # (role, content): role is "system", "user" or "assistant"
ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class SFTExample:
    prompt: tuple[Turn, ...]
    response: str


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Turn, ...]
    chosen: str
    rejected: str


def user_prompt(text: str) -> tuple[Turn, ...]:
    """A one-turn conversation: the user's instruction."""
    return (("user", text),)


def last_user_text(prompt: tuple[Turn, ...]) -> str:
    """The latest user turn (the instruction a task reward judges)."""
    return next((content for role, content in reversed(prompt) if role == "user"), "")
