"""What a LangChain tool call does with a reviewer's answer: run with the edited arguments, or
return a rejection as its result.

LangChain tells callbacks that a tool starts but lets them change neither its input nor its
result. So :func:`install` wraps ``BaseTool.run`` and ``BaseTool.arun`` (once, when the first
handler is made; a tool call made while no handler records passes straight through). Each tool
call gets a :class:`Turn`, which the handler finds while it starts the call:

- the wrapper hands LangChain a copy of a dict input (the caller's dict is never changed) and
  keeps it on the turn; when a reviewer approves the call with edits, the handler writes them
  into that copy before LangChain turns it into the tool's arguments, so the tool runs with
  them. A tool given a string input cannot take edits: such a call is refused, never run as
  it was;
- when the rule returns a rejection as the call's result (``on_reject: result``), the handler
  notes the ``ApprovalDenied`` it raises on the turn, and the wrapper returns its text instead:
  a ``ToolMessage`` (``status="error"``) when the call came from a model's tool call, so the
  model reads the reason and can adapt, else the text itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from agentops_sdk.errors import ApprovalDenied, EnforcementError

__all__ = ["Turn", "install", "take_turn"]


class Turn:
    """One tool call's link between the wrappers and the handler."""

    __slots__ = ("input", "refused", "taken")

    def __init__(self, tool_input: dict[str, Any] | None) -> None:
        self.input = tool_input
        """The dict LangChain makes the tool's arguments from (None: a string input)."""
        self.refused: EnforcementError | None = None
        """What the handler refused the call with."""
        self.taken = False

    @property
    def takes_edits(self) -> bool:
        """Whether edited arguments can reach the tool."""
        return self.input is not None

    def edit(self, edited: dict[str, Any]) -> None:
        """Make the tool run with ``edited`` (every argument by name, some changed)."""
        assert self.input is not None
        self.input.update(edited)


_turn: ContextVar[Turn | None] = ContextVar("agentops_langchain_tool_turn", default=None)
_installed: list[tuple[str, Callable[..., Any]]] = []


def take_turn() -> Turn | None:
    """The turn of the tool call starting in this context (each is taken once: a tool started
    some other way, inside another tool's call, does not take its parent's)."""
    turn = _turn.get()
    if turn is None or turn.taken:
        return None
    turn.taken = True
    return turn


def install() -> None:
    """Wrap ``BaseTool.run`` and ``BaseTool.arun``; a second call does nothing."""
    if _installed:
        return
    run, arun = BaseTool.run, BaseTool.arun

    @functools.wraps(run)
    def wrapped_run(self: BaseTool, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        turn, tool_input = _begin(tool_input)
        token = _turn.set(turn)
        try:
            return run(self, tool_input, *args, **kwargs)
        except ApprovalDenied as exc:
            if exc is not turn.refused or exc.result is None:
                raise
            return _as_result(self, exc.result, kwargs.get("tool_call_id"))
        finally:
            _turn.reset(token)

    @functools.wraps(arun)
    async def wrapped_arun(self: BaseTool, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        turn, tool_input = _begin(tool_input)
        token = _turn.set(turn)
        try:
            return await arun(self, tool_input, *args, **kwargs)
        except ApprovalDenied as exc:
            if exc is not turn.refused or exc.result is None:
                raise
            return _as_result(self, exc.result, kwargs.get("tool_call_id"))
        finally:
            _turn.reset(token)

    _installed.extend([("run", run), ("arun", arun)])
    BaseTool.run = wrapped_run  # type: ignore[method-assign]
    BaseTool.arun = wrapped_arun  # type: ignore[method-assign]


def _begin(tool_input: Any) -> tuple[Turn, Any]:
    if isinstance(tool_input, dict):
        tool_input = dict(tool_input)
        return Turn(tool_input), tool_input
    return Turn(None), tool_input


def _as_result(tool: BaseTool, text: str, tool_call_id: Any) -> Any:
    """A rejection's text as the tool's result, in the form LangChain gives a tool's output."""
    if isinstance(tool_call_id, str):
        return ToolMessage(content=text, tool_call_id=tool_call_id, name=tool.name, status="error")
    return text
