"""What the policy engine's callers read off an LLM request's parameters (pure, no pydantic):
the SDK's policy stage, the hub's table tests and dry runs alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MAX_TOKENS_ARGUMENTS", "max_tokens_of"]

MAX_TOKENS_ARGUMENTS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")
"""Where an LLM call's arguments say how many output tokens it asks for (OpenAI's chat and
responses APIs)."""


def max_tokens_of(arguments: Mapping[str, Any]) -> int | None:
    """The output tokens an LLM call with these arguments asks for; None: it sets no maximum."""
    for name in MAX_TOKENS_ARGUMENTS:
        value = arguments.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
