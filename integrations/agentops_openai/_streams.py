"""Streams that record their call: the provider's own stream object, ending its span exactly once.

The stream the client returned is kept (same object, same methods, ``isinstance(Stream)`` still
true): its class becomes a subclass whose ``close()`` also ends the span, and its chunk iterator
is wrapped to show each chunk to a :class:`~agentops_openai._record.StreamState` on the way.
Whichever comes first ends the span, and the others then do nothing: exhaustion, an error while
reading, ``close()`` (also through ``with``), the wrapped iterator being closed (a ``break``
followed by garbage collection), or the stream being collected unread (``weakref.finalize``).

A kill that reaches the agent while it reads a stream stops it: before each chunk is handed
over, the call is checked (``ExternalCall.stop_if_killed``); a kill closes the provider's
response and raises ``AgentKilled`` to the reader, and the span ends ``blocked`` with the kill's
decision.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from openai import AsyncStream, Stream

from agentops_openai._record import StreamState, record_failure
from agentops_sdk.errors import AgentKilled
from agentops_sdk.integrations import ExternalCall

__all__ = ["RecordedAsyncStream", "RecordedStream", "record_async_stream", "record_stream"]

logger = logging.getLogger("agentops_sdk")


class StreamRecording:
    """The recording side of one stream: feeds chunks to its state, ends the call once."""

    __slots__ = ("call", "state")

    def __init__(self, call: ExternalCall, state: StreamState) -> None:
        self.call = call
        self.state = state

    def observe(self, chunk: Any) -> bool:
        """Whether the caller sees ``chunk`` (recording problems never hide one)."""
        try:
            return self.state.observe(chunk)
        except Exception:
            logger.exception("agentops: could not record a chunk of %s", self.call.span.name)
            return True

    def end(self, completed: bool) -> None:
        """The stream is over: read to its end, or closed or dropped before it."""
        if self.call.done:
            return
        output = None
        try:
            if not completed:
                self.call.span.set_attribute("stream_closed_early", True)
            output = self.state.output(completed)
        except Exception:
            logger.exception("agentops: could not record the stream of %s", self.call.span.name)
        self.call.end(output)

    def fail(self, exc: BaseException) -> None:
        """Reading the stream raised ``exc`` (re-raised unchanged by the caller)."""
        if self.call.done:
            return
        try:
            self.state.output(False)  # model and usage, if they came before the error
        except Exception:
            logger.exception("agentops: could not record the stream of %s", self.call.span.name)
        record_failure(self.call, exc)

    def abandon(self) -> None:
        """The stream was garbage-collected."""
        self.end(completed=False)


class RecordedStream(Stream[Any]):
    """A :class:`openai.Stream` whose ``close()`` also ends its span."""

    _agentops_recording: StreamRecording

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._agentops_recording.end(completed=False)


class RecordedAsyncStream(AsyncStream[Any]):
    """An :class:`openai.AsyncStream` whose ``close()`` (and ``aclose()``) also ends its span."""

    _agentops_recording: StreamRecording

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            self._agentops_recording.end(completed=False)


def record_stream(call: ExternalCall, state: StreamState, stream: Stream[Any]) -> Stream[Any]:
    """Make ``stream`` record ``call`` as it is read; returns the same object."""
    recording = StreamRecording(call, state)
    stream._iterator = _observed(recording, stream._iterator)
    _attach(recording, stream, RecordedStream)
    return stream


def record_async_stream(
    call: ExternalCall, state: StreamState, stream: AsyncStream[Any]
) -> AsyncStream[Any]:
    """Async twin of :func:`record_stream`."""
    recording = StreamRecording(call, state)
    stream._iterator = _aobserved(recording, stream._iterator)
    _attach(recording, stream, RecordedAsyncStream)
    return stream


def _attach(recording: StreamRecording, stream: Any, recorded: type[Any]) -> None:
    if type(stream) in recorded.__bases__:  # a subclass of the client's own is left as it is
        stream.__class__ = recorded
        stream._agentops_recording = recording
    weakref.finalize(stream, recording.abandon)  # holds the recording, never the stream


def _observed(recording: StreamRecording, chunks: Iterator[Any]) -> Iterator[Any]:
    call = recording.call
    try:
        for chunk in chunks:
            try:
                call.stop_if_killed()
            except AgentKilled:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # the provider's stream then closes its response
                raise
            if recording.observe(chunk):
                yield chunk
    except GeneratorExit:
        recording.end(completed=False)
        raise
    except BaseException as exc:
        recording.fail(exc)
        raise
    recording.end(completed=True)


async def _aobserved(recording: StreamRecording, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    call = recording.call
    try:
        async for chunk in chunks:
            try:
                call.stop_if_killed()
            except AgentKilled:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                raise
            if recording.observe(chunk):
                yield chunk
    except GeneratorExit:
        recording.end(completed=False)
        raise
    except BaseException as exc:
        recording.fail(exc)
        raise
    recording.end(completed=True)
