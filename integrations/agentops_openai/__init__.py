"""OpenAI integration for AgentOps: each chat completion and response is a guarded ``llm`` span.

``init()`` enables it when the ``openai`` package is installed (or by hand)::

    import agentops_sdk as agentops
    from agentops_sdk import integrations

    agentops.init()                   # or: integrations.enable("openai")
    client = openai.OpenAI()
    client.chat.completions.create(model="gpt-4o", messages=[...])   # recorded, guards first

It patches the ``create`` methods of the Chat Completions and Responses resources at the class
level (sync and async), so clients made before and after enabling it are covered alike, and
``uninstrument()`` restores the originals. See docs/integrations.md for what a span records.

This module does not import ``openai``: ``init()`` loads every registered integration, installed
framework or not, and the patches are imported only when ``openai`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from agentops_sdk.integrations import Integration, when_imported

if TYPE_CHECKING:
    from agentops_openai._patch import Patch

__all__ = ["OpenAIIntegration"]


class OpenAIIntegration(Integration):
    """Records and guards calls made with the ``openai`` client library.

    ``openai`` takes a third of a second to import: in a process that has not imported it yet,
    the patches wait for its import, so ``init()`` stays cheap where it is installed but unused.
    """

    name: ClassVar[str] = "openai"
    framework: ClassVar[str] = "openai"

    def __init__(self) -> None:
        super().__init__()
        self._patches: list[Patch] = []
        self._cancel: Callable[[], None] | None = None

    def _instrument(self) -> None:
        self._cancel = when_imported(self.framework, self._patch)

    def _uninstrument(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if self._patches:
            from agentops_openai._patch import remove

            remove(self._patches)
            self._patches = []

    def _patch(self) -> None:
        from agentops_openai._patch import install

        self._patches = install()
