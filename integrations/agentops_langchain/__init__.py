"""LangChain integration for AgentOps (see docs/integrations.md).

``init()`` enables it when ``langchain-core`` is installed: every chain, runnable, chat model,
LLM, tool, retriever and LangGraph graph then records into the run tree, and tool and model
calls pass the enforcer before they run, with no callback to pass::

    import agentops_sdk as agentops

    agentops.init()
    chain.invoke({"question": "..."})     # recorded; a refused tool call raises PolicyViolation

Without ``init()``'s automatic setup (``init(integrations=[])``), pass the handler yourself::

    from agentops_langchain import AgentOpsCallbackHandler

    chain.invoke(inputs, config={"callbacks": [AgentOpsCallbackHandler()]})

This module does not import LangChain: ``init()`` loads every registered integration, installed
framework or not. The handler lives in :mod:`agentops_langchain.handler`, loaded on first use.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from agentops_sdk.integrations import Integration, when_imported

if TYPE_CHECKING:
    from agentops_langchain.handler import AgentOpsCallbackHandler

__all__ = ["AgentOpsCallbackHandler", "LangChainIntegration"]

logger = logging.getLogger("agentops_sdk")

HANDLER_MODULE = "agentops_langchain.handler"


class LangChainIntegration(Integration):
    """Registers :class:`AgentOpsCallbackHandler` with every LangChain run while instrumented.

    LangChain takes almost half a second to import, and a process that has not imported it does
    not use it yet: then the handler is registered when ``langchain_core`` is imported, not
    before, so ``init()`` stays cheap where LangChain is installed but unused.
    """

    name: ClassVar[str] = "langchain"
    framework: ClassVar[str] = "langchain_core"

    def __init__(self) -> None:
        super().__init__()
        self._cancel: Callable[[], None] | None = None

    def _instrument(self) -> None:
        self._cancel = when_imported(self.framework, _register)

    def _uninstrument(self) -> None:
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
        if HANDLER_MODULE in sys.modules:
            sys.modules[HANDLER_MODULE].unregister_automatic_handler()


def __getattr__(name: str) -> Any:
    if name == "AgentOpsCallbackHandler":
        from agentops_langchain.handler import AgentOpsCallbackHandler

        return AgentOpsCallbackHandler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register() -> None:
    from agentops_langchain.handler import register_automatic_handler

    register_automatic_handler()
