"""The callback handler that turns LangChain runs into AgentOps spans.

LangChain reports every run it starts (chain, runnable, chat model, LLM, tool, retriever,
LangGraph graph and node) with its ``run_id`` and its parent's ``parent_run_id``. The handler
keeps one :class:`~agentops_sdk.integrations.ExternalCall` per open run and opens each under the
span of its LangChain parent, or under the current AgentOps span (an ``@agentops.agent``
function, say) when LangChain has none. So the tree in the hub is the tree LangChain ran, joined
to the code around it.

=================  =======================================================================
LangChain run      AgentOps span
=================  =======================================================================
chain, runnable    ``step``; a graph or agent at the root of a LangChain tree is ``agent``
chat model, LLM    ``llm``, with model, provider and token usage from the response
tool               ``tool``, named as the tool, its arguments as input
retriever          ``step`` with a ``retriever`` attribute and the documents as output
=================  =======================================================================

Each run passes the enforcer when it starts, so a refused tool or model call raises the stage's
``EnforcementError`` out of LangChain before the tool body or the model runs (the handler sets
``raise_error``; any failure of its own is logged, never raised). A streamed model call is
checked at each new token, so a kill stops it in flight with ``AgentKilled``. The handler is
synchronous and runs inline in async runs too, which keeps the tree in order. A stage that
must wait (an approval) blocks a sync run; in an async run the handler only opens the span, and
the enforcer is awaited right after LangChain's async dispatch of the start event
(:class:`AsyncDispatch`, installed with the automatic handler), still before the tool or model
runs, so the event loop keeps serving other tasks meanwhile. A tool a reviewer approved with
edits runs with them, and a rejection a rule returns as the result is the tool's result
(:mod:`agentops_langchain.tool_calls`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast
from uuid import UUID

from langchain_core.agents import AgentAction, AgentFinish
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks import manager as callback_manager
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, GenerationChunk, LLMResult
from langchain_core.tracers.context import register_configure_hook

from agentops_langchain import tool_calls
from agentops_langchain.tool_calls import Turn
from agentops_sdk.context import CURRENT
from agentops_sdk.errors import EnforcementError
from agentops_sdk.integrations import ExternalCall, claim_model_call
from agentops_sdk.spans import Span, SpanKind

__all__ = [
    "AgentOpsCallbackHandler",
    "AsyncDispatch",
    "register_automatic_handler",
    "unregister_automatic_handler",
]

logger = logging.getLogger("agentops_sdk")

AGENT_CLASSES = frozenset({"AgentExecutor", "CompiledStateGraph", "CompiledGraph", "Pregel"})
"""Runnables recorded as ``agent`` when they are the root of a LangChain tree."""

START_EVENTS = frozenset(
    {"on_chain_start", "on_chat_model_start", "on_llm_start", "on_tool_start", "on_retriever_start"}
)
"""The callbacks that start a run, hence pass the enforcer."""

_Deferred = list[tuple["AgentOpsCallbackHandler", UUID, ExternalCall, Turn | None]]
_deferred: ContextVar[_Deferred | None] = ContextVar("agentops_langchain_deferred", default=None)
"""Set while :class:`AsyncDispatch` delivers a start event: runs opened then, to enforce next."""


class AgentOpsCallbackHandler(BaseCallbackHandler):
    """Records LangChain runs as AgentOps spans and guards each call before it runs.

    ``init()`` adds one to every LangChain run by itself; pass one explicitly when the
    integration is not enabled::

        from agentops_langchain import AgentOpsCallbackHandler

        agent.invoke(inputs, config={"callbacks": [AgentOpsCallbackHandler()]})

    One handler may serve any number of concurrent runs, in threads or asyncio tasks.
    """

    raise_error = True
    """Let a guard's ``EnforcementError`` stop the run (nothing else ever leaves the handler)."""
    run_inline = True
    """Run in the caller's context, in order, in async runs too (not in a thread pool)."""

    def __init__(self) -> None:
        self._calls: dict[UUID, ExternalCall] = {}
        self._recording = True
        tool_calls.install()  # so that tools can take a reviewer's edits (see tool_calls)

    # -- chains, runnables, graphs ------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a ``step`` span (``agent`` for a graph or agent at the root)."""
        name = _run_name(serialized, kwargs, "chain")
        kind: SpanKind = (
            "agent" if parent_run_id is None and _is_agent(serialized, name) else "step"
        )
        self._start(kind, name, run_id, parent_run_id, input=inputs)

    def on_chain_end(self, outputs: dict[str, Any] | Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the chain's span with its outputs."""
        self._end(run_id, outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the chain's error (LangChain re-raises it unchanged)."""
        self._fail(run_id, error)

    def on_agent_action(self, action: AgentAction, *, run_id: UUID, **kwargs: Any) -> None:
        """Note on the agent's span which tool it decided to call."""
        call = self._calls.get(run_id)
        if call is not None:
            call.span.add_event("agent_action", tool=action.tool, tool_input=action.tool_input)

    def on_agent_finish(self, finish: AgentFinish, *, run_id: UUID, **kwargs: Any) -> None:
        """Note on the agent's span that it answered."""
        call = self._calls.get(run_id)
        if call is not None:
            call.span.add_event("agent_finish", return_values=finish.return_values)

    # -- chat models and LLMs -----------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open an ``llm`` span with the messages as input (guards run here)."""
        self._start_model(
            serialized,
            messages,
            run_id=run_id,
            parent_run_id=parent_run_id,
            metadata=metadata,
            kwargs=kwargs,
        )

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open an ``llm`` span with the prompts as input (guards run here)."""
        self._start_model(
            serialized,
            prompts,
            run_id=run_id,
            parent_run_id=parent_run_id,
            metadata=metadata,
            kwargs=kwargs,
        )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the model's span with its answer, model name and token usage."""
        call = self._calls.pop(run_id, None)
        if call is None:
            return
        try:
            output = _record_response(call.span, response)
        except Exception:
            logger.exception("agentops: could not read the LangChain model response")
            output = None
        call.end(output)

    def on_llm_new_token(
        self,
        token: str | list[str | dict[str, Any]],
        *,
        chunk: GenerationChunk | ChatGenerationChunk | None = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """A streamed model call got a token: a kill that reached the agent since stops it here
        (``AgentKilled`` out of the stream; LangChain then reports the error, ending the span)."""
        call = self._calls.get(run_id)
        if call is not None:
            call.stop_if_killed()

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the model's error (LangChain re-raises it unchanged)."""
        self._fail(run_id, error)

    # -- tools and retrievers -----------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a ``tool`` span; a guard refusing the call stops it before the tool runs."""
        name = _run_name(serialized, kwargs, "tool")
        self._start(
            "tool",
            name,
            run_id,
            parent_run_id,
            input=input_str if inputs is None else inputs,
            arguments=inputs if isinstance(inputs, Mapping) else None,
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """Close the tool's span with its output."""
        self._end(run_id, output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the tool's error (LangChain re-raises it unchanged)."""
        self._fail(run_id, error)

    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open a ``step`` span marked with the retriever's name, the query as input."""
        name = _run_name(serialized, kwargs, "retriever")
        call = self._start("step", name, run_id, parent_run_id, input=query)
        if call is not None:
            call.span.set_attribute("retriever", name)

    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        """Close the retriever's span with the documents it found."""
        self._end(run_id, list(documents))

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Record the retriever's error (LangChain re-raises it unchanged)."""
        self._fail(run_id, error)

    # -- the mapping ----------------------------------------------------------------------------

    def _start_model(
        self,
        serialized: dict[str, Any] | None,
        prompts: Sequence[Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = next(
            (
                value
                for value in (
                    params.get("model"),
                    params.get("model_name"),
                    params.get("model_id"),
                    metadata.get("ls_model_name"),
                )
                if isinstance(value, str) and value
            ),
            None,
        )
        provider = metadata.get("ls_provider")
        input = prompts[0] if len(prompts) == 1 else prompts
        call = self._start(
            "llm",
            _run_name(serialized, kwargs, "llm"),
            run_id,
            parent_run_id,
            input=input,
            model=model,
            provider=provider if isinstance(provider, str) else None,
            arguments={**params, "messages": input},
        )
        if call is not None:
            # The model may call a provider client we also instrument (ChatOpenAI -> openai):
            # this span records that call, so the provider's integration stays out of it.
            claim_model_call(call)

    def _start(
        self,
        kind: SpanKind,
        name: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        *,
        input: Any,
        model: str | None = None,
        provider: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> ExternalCall | None:
        """Open the run's span under its LangChain parent's and run the guards (which see
        ``arguments``, else ``{"input": input}``)."""
        if not self._recording:
            return None
        parent = None if parent_run_id is None else self._calls.get(parent_run_id)
        # ExternalCall nests under the current span: make the parent current just for the start.
        token = None if parent is None else CURRENT.set(parent.span)
        deferred = _deferred.get()
        turn = tool_calls.take_turn() if kind == "tool" else None
        try:
            start = ExternalCall.start if deferred is None else ExternalCall.open
            # ``open``: an async run, where AsyncDispatch awaits the enforcer once this
            # callback returns.
            call = start(
                kind,
                name,
                input=input,
                model=model,
                provider=provider,
                arguments=arguments,
                edits=turn is not None and turn.takes_edits,
            )
        except EnforcementError as exc:
            if turn is not None:
                turn.refused = exc
            raise
        except Exception:
            logger.exception("agentops: could not record the LangChain run %s", name)
            return None
        finally:
            if token is not None:
                CURRENT.reset(token)
        if call is not None:
            self._calls[run_id] = call
            if deferred is not None:
                deferred.append((self, run_id, call, turn))
            elif turn is not None and call.edited is not None:
                turn.edit(call.edited)
        return call

    async def _enforce(self, run_id: UUID, call: ExternalCall, turn: Turn | None) -> None:
        """Pass the enforcer for a run opened in an async run (see :class:`AsyncDispatch`)."""
        try:
            await call.aenforce()
        except Exception as exc:
            self._calls.pop(run_id, None)  # ended by its refusal: LangChain will not end it
            if isinstance(exc, EnforcementError):
                if turn is not None:
                    turn.refused = exc
                raise
            logger.exception("agentops: could not enforce the LangChain run %s", call.span.name)
        except BaseException:
            self._calls.pop(run_id, None)
            raise
        else:
            if turn is not None and call.edited is not None:
                turn.edit(call.edited)

    def _end(self, run_id: UUID, output: Any) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None:
            call.end(output)

    def _fail(self, run_id: UUID, error: BaseException) -> None:
        call = self._calls.pop(run_id, None)
        if call is not None:
            call.fail(error)


def register_automatic_handler() -> None:
    """Add a handler to every LangChain run from now on, and let async runs await the enforcer
    (what ``instrument()`` does)."""
    _automatic.handler = AgentOpsCallbackHandler()
    _async_dispatch.install()


def unregister_automatic_handler() -> None:
    """Stop recording through the automatic handler, in runs already started too."""
    _async_dispatch.remove()
    handler, _automatic.handler = _automatic.handler, None
    if handler is not None:
        handler._recording = False


class AsyncDispatch:
    """Wraps LangChain's async event dispatch (``callback_manager.ahandle_event``) so that the
    start of a run in an async run awaits the enforcer instead of blocking the event loop.

    Every ``AsyncCallbackManager`` delivers its events through that one function. While it
    delivers a start event, a context variable tells the handler (called inline, synchronously)
    to only open the run's span; once delivery is over, the wrapper awaits the enforcer for
    each run so opened. LangChain calls the tool or the model only after the dispatch returns,
    and a refusal raised here propagates out of it exactly like one raised by the handler.
    Runs dispatched any other way (sync runs) keep the blocking path.
    """

    def __init__(self) -> None:
        self._original: Callable[..., Coroutine[Any, Any, None]] | None = None
        self._wrapper: Callable[..., Coroutine[Any, Any, None]] | None = None

    def install(self) -> None:
        """Wrap the dispatch; a second call does nothing."""
        if self._wrapper is not None:
            return
        original = callback_manager.ahandle_event
        active = self

        @functools.wraps(original)
        async def ahandle_event(
            handlers: list[Any], event_name: str, ignore_condition_name: str | None, *args: Any,
            **kwargs: Any,
        ) -> None:  # fmt: skip
            if active._wrapper is not ahandle_event or event_name not in START_EVENTS:
                return await original(handlers, event_name, ignore_condition_name, *args, **kwargs)
            deferred: _Deferred = []
            token = _deferred.set(deferred)
            try:
                await original(handlers, event_name, ignore_condition_name, *args, **kwargs)
            finally:
                _deferred.reset(token)
            for handler, run_id, call, turn in deferred:
                await handler._enforce(run_id, call, turn)
            return None

        self._original, self._wrapper = original, ahandle_event
        callback_manager.ahandle_event = ahandle_event

    def remove(self) -> None:
        """Restore the dispatch (or, if something wrapped it after us, switch ours off)."""
        original, wrapper = self._original, self._wrapper
        self._original = self._wrapper = None
        if wrapper is not None and callback_manager.ahandle_event is wrapper:
            callback_manager.ahandle_event = original  # type: ignore[assignment]


_async_dispatch = AsyncDispatch()


class _AutomaticHandler:
    """The slot LangChain's configure hook reads: the handler every run gets, or None.

    LangChain takes a ContextVar here and only ever calls ``get()``. A real ContextVar set by
    ``init()`` would reach neither threads started afterwards nor contexts copied before, and
    unsetting it would not reach them either, while ``init()`` applies to the whole process.
    """

    def __init__(self) -> None:
        self.handler: AgentOpsCallbackHandler | None = None

    def get(self) -> AgentOpsCallbackHandler | None:
        return self.handler


_automatic = _AutomaticHandler()
# handle_class: a run that was given an AgentOpsCallbackHandler explicitly gets no second one.
register_configure_hook(
    cast("ContextVar[AgentOpsCallbackHandler | None]", _automatic),
    inheritable=True,
    handle_class=AgentOpsCallbackHandler,
)


def _run_name(serialized: Mapping[str, Any] | None, kwargs: Mapping[str, Any], default: str) -> str:
    """The name LangChain gave the run (``run_name``, the tool's or the class's name)."""
    name = kwargs.get("name")
    if isinstance(name, str) and name:
        return name
    if serialized:
        name = serialized.get("name")
        if isinstance(name, str) and name:
            return name
        path = serialized.get("id")
        if isinstance(path, list) and path:
            return str(path[-1])
    return default


def _is_agent(serialized: Mapping[str, Any] | None, name: str) -> bool:
    """Whether a root chain is an agent or a graph (LangGraph names its graphs "LangGraph")."""
    if name == "LangGraph" or "agent" in name.lower():
        return True
    path = serialized.get("id") if serialized else None
    return isinstance(path, list) and bool(path) and path[-1] in AGENT_CLASSES


def _record_response(span: Span, response: LLMResult) -> Any:
    """Set the span's model and usage from a model response; return what to record as output."""
    outputs: list[Any] = []
    input_tokens = output_tokens = 0
    counted = False
    model: Any = None
    for generations in response.generations:
        for generation in generations:
            message = getattr(generation, "message", None)
            if not isinstance(message, AIMessage):
                outputs.append(generation.text)
                continue
            outputs.append(
                {"content": message.content, "tool_calls": message.tool_calls}
                if message.tool_calls
                else message.content
            )
            if message.usage_metadata:
                input_tokens += message.usage_metadata["input_tokens"]
                output_tokens += message.usage_metadata["output_tokens"]
                counted = True
            model = model or message.response_metadata.get(
                "model_name", message.response_metadata.get("model")
            )
    llm_output = response.llm_output or {}
    token_usage = llm_output.get("token_usage") or llm_output.get("usage")
    if not counted and isinstance(token_usage, Mapping):
        input_tokens = token_usage.get("prompt_tokens", token_usage.get("input_tokens", 0))
        output_tokens = token_usage.get("completion_tokens", token_usage.get("output_tokens", 0))
        counted = True
    model = model or llm_output.get("model_name", llm_output.get("model"))
    span.set_usage(
        input_tokens=input_tokens if counted else None,
        output_tokens=output_tokens if counted else None,
        model=model if isinstance(model, str) else None,
    )
    return outputs[0] if len(outputs) == 1 else outputs
