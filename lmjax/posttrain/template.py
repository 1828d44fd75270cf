"""The chat template: how a conversation becomes the prompt text before a response, and
which token ends a response. A config, so a model trained with another format keeps it."""

from __future__ import annotations

import dataclasses

from lmjax.errors import ConfigError
from lmjax.posttrain.examples import Turn
from lmjax.tokenizers import Tokenizer

END_TOKENS = ("bos", "eos", "none")


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
    """Each turn is its role's format with {content} filled in; the response follows the
    rendered prompt directly and is followed by `end_token`. The default suits stories260K:
    the instruction on its own line, the story after it, and BOS ending a story (llama2.c)."""

    system: str = "{content}\n"
    user: str = "{content}\n"
    assistant: str = "{content}\n"  # earlier assistant turns of a multi-turn prompt
    end_token: str = "bos"

    def __post_init__(self) -> None:
        if self.end_token not in END_TOKENS:
            raise ConfigError(f"chat template end_token={self.end_token!r}: use one of {END_TOKENS}")
        for role in ("system", "user", "assistant"):
            if "{content}" not in getattr(self, role):
                raise ConfigError(f"chat template {role}={getattr(self, role)!r} lacks {{content}}")

    def prompt_text(self, turns: tuple[Turn, ...]) -> str:
        return "".join(getattr(self, role).format(content=content) for role, content in turns)

    def end_id(self, tokenizer: Tokenizer) -> int | None:
        if self.end_token == "none":
            return None
        found = tokenizer.bos_id if self.end_token == "bos" else tokenizer.eos_id
        if found is None:
            raise ConfigError(f"the tokenizer has no {self.end_token.upper()} token to end responses: "
                              "set the chat template's end_token to one it has, or 'none'")
        return found

    def stop_ids(self, tokenizer: Tokenizer) -> tuple[int, ...]:
        """The ids that end a sampled response: the end token, or none."""
        end = self.end_id(tokenizer)
        return () if end is None else (end,)

    def prompt_ids(self, tokenizer: Tokenizer, turns: tuple[Turn, ...]) -> list[int]:
        """BOS (when the tokenizer has one) then the rendered prompt."""
        start = [] if tokenizer.bos_id is None else [tokenizer.bos_id]
        return start + tokenizer.encode_ordinary(self.prompt_text(turns))

    def response_ids(self, tokenizer: Tokenizer, response: str) -> list[int]:
        """The response's ids followed by the end token."""
        return tokenizer.encode_ordinary(response) + list(self.stop_ids(tokenizer))
