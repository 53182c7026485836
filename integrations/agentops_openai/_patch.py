"""The class-level patches: each ``create`` becomes a guarded, recorded call.

Imported only when the integration instruments (it imports ``openai``). Sync and async wrappers
share everything but the awaiting: :class:`~agentops_openai._record.Request` describes the call,
:func:`finish` records what came back, or wraps the stream that will.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from openai import AsyncStream, Stream
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.responses import AsyncResponses, Responses

from agentops_openai._record import CHAT, RESPONSES, Api, Request, record_failure
from agentops_openai._streams import record_async_stream, record_stream
from agentops_sdk import get_client
from agentops_sdk.integrations import ExternalCall, model_call_claimed

__all__ = ["Patch", "edited", "finish", "install", "remove"]

logger = logging.getLogger("agentops_sdk")

TARGETS: tuple[tuple[type, Api, bool], ...] = (
    (Completions, CHAT, False),
    (AsyncCompletions, CHAT, True),
    (Responses, RESPONSES, False),
    (AsyncResponses, RESPONSES, True),
)
"""Each resource class whose ``create`` is patched, the API it speaks, and whether it is async."""


class Patch:
    """One replaced method: what it was, and whether the replacement still records."""

    __slots__ = ("active", "original", "owner", "wrapper")

    def __init__(self, owner: type, api: Api, is_async: bool) -> None:
        self.owner = owner
        self.original: Callable[..., Any] = owner.__dict__["create"]
        self.active = True
        self.wrapper = (_async_wrapper if is_async else _sync_wrapper)(self, api)


def install() -> list[Patch]:
    """Patch every target; return what :func:`remove` needs to undo it."""
    patches = [Patch(owner, api, is_async) for owner, api, is_async in TARGETS]
    for patch in patches:
        setattr(patch.owner, "create", patch.wrapper)  # noqa: B010 - one name for all targets
    return patches


def remove(patches: list[Patch]) -> None:
    """Put the original methods back.

    If something patched a method after us (another instrumentation wrapping ours), restoring
    would remove its wrapper too: ours is switched off instead and calls straight through.
    """
    for patch in patches:
        patch.active = False
        if patch.owner.__dict__.get("create") is patch.wrapper:
            setattr(patch.owner, "create", patch.original)  # noqa: B010
        else:
            logger.warning(
                "agentops: %s.create was patched again after the OpenAI integration; "
                "leaving it in place, with the integration switched off",
                patch.owner.__qualname__,
            )


def finish(call: ExternalCall, request: Request, result: Any) -> Any:
    """Record a call's result, or wrap the stream it returned so the stream records it."""
    if isinstance(result, Stream):
        return record_stream(call, request.api.stream_state(call.span, request), result)
    if isinstance(result, AsyncStream):
        return record_async_stream(call, request.api.stream_state(call.span, request), result)
    output = None
    try:
        output = request.api.record_result(call.span, result)
    except Exception:
        logger.exception("agentops: could not record the result of %s", call.span.name)
    call.end(output)
    return result


def edited(call: ExternalCall, request: Request) -> Request:
    """The request to send: ``request``, or the one a reviewer approved with edits (the
    parameters they changed replace the caller's; the span records the model sent)."""
    if call.edited is None:
        return request
    made = Request(request.api, {**request.kwargs, **call.edited})
    made.include_usage_injected |= request.include_usage_injected
    if made.model is not None and made.model != request.model:
        call.span.model = made.model
    return made


def _sync_wrapper(patch: Patch, api: Api) -> Callable[..., Any]:
    original = patch.original

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = get_client()
        if not patch.active or client is None or model_call_claimed():
            return original(self, *args, **kwargs)
        request = Request(api, kwargs)
        call = ExternalCall.start(
            "llm",
            request.name,
            input=request.input,
            model=request.model,
            provider="openai",
            arguments=request.parameters() if client.enforcer.active else None,
            edits=True,
        )
        if call is None:
            return original(self, *args, **kwargs)
        request = edited(call, request)
        request.describe(call.span)
        try:
            with call.activated():
                result = original(self, *args, **request.kwargs)
        except BaseException as exc:
            record_failure(call, exc)
            raise
        return finish(call, request, result)

    return create


def _async_wrapper(patch: Patch, api: Api) -> Callable[..., Any]:
    original = patch.original

    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = get_client()
        if not patch.active or client is None or model_call_claimed():
            return await original(self, *args, **kwargs)
        request = Request(api, kwargs)
        call = await ExternalCall.astart(
            "llm",
            request.name,
            input=request.input,
            model=request.model,
            provider="openai",
            arguments=request.parameters() if client.enforcer.active else None,
            edits=True,
        )
        if call is None:
            return await original(self, *args, **kwargs)
        request = edited(call, request)
        request.describe(call.span)
        try:
            with call.activated():
                result = await original(self, *args, **request.kwargs)
        except BaseException as exc:
            record_failure(call, exc)
            raise
        return finish(call, request, result)

    return create
