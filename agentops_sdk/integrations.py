"""Framework integrations: how they are found and switched on, and how they record calls.

An integration is a small class with a ``name``, the ``framework`` module it instruments, and
``instrument()``/``uninstrument()``. Packages register theirs in the entry-point group
``agentops_sdk.integrations``::

    [project.entry-points."agentops_sdk.integrations"]
    openai = "agentops_openai:OpenAIIntegration"

``init()`` enables every registered integration whose framework is importable;
``init(integrations=["openai"])`` enables only those named, ``disabled_integrations=[...]`` skips
some, and :func:`enable`/:func:`disable` do it by hand. Enabling twice is harmless; disabling
restores the library as it was.

Framework code records each LLM or tool call it sees with :class:`ExternalCall`, which passes the
enforcer before the call runs (a refused call raises the stage's ``EnforcementError``, and the
framework call must not be made), exactly like a decorated function::

    call = ExternalCall.start("llm", "chat gpt-4o", model="gpt-4o", provider="openai",
                              input=messages, arguments=request_parameters)
    if call is None:                       # the SDK is off: just call through
        return original(*args, **kwargs)
    try:
        with call.activated():             # spans made inside nest under this one
            response = original(*args, **kwargs)
    except BaseException as exc:
        call.fail(exc)
        raise
    call.span.set_usage(input_tokens=..., output_tokens=...)
    call.end(response)

A caller that can make the call with other arguments passes ``edits=True``: a call a reviewer
approved with edited arguments then comes back with them in ``call.edited`` (by name, as the
stages saw the arguments: every one of them, the edited ones changed), and the caller must make
the call with those. Without ``edits=True`` such a call is refused (``ApprovalDenied``), never
made as it was.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

from agentops_sdk import client as _client
from agentops_sdk.client import CallSpec, arguments_of
from agentops_sdk.context import CURRENT
from agentops_sdk.enforcement.call import Substitution
from agentops_sdk.enforcement.failures import FailureLog
from agentops_sdk.spans import Span, SpanKind

__all__ = [
    "ENTRY_POINT_GROUP",
    "ExternalCall",
    "Integration",
    "claim_model_call",
    "disable",
    "enable",
    "enabled",
    "model_call_claimed",
    "registered",
    "setup_integrations",
    "when_imported",
]

logger = logging.getLogger("agentops_sdk")

ENTRY_POINT_GROUP = "agentops_sdk.integrations"

_lock = threading.Lock()
_enabled: dict[str, Integration] = {}
_failures = FailureLog()


class Integration(abc.ABC):
    """Base class of an integration. Subclasses set ``name`` and ``framework`` and implement
    :meth:`_instrument` and :meth:`_uninstrument`; the public methods make them idempotent."""

    name: ClassVar[str]
    """How users refer to it: ``init(integrations=["openai"])``."""
    framework: ClassVar[str]
    """The module that must be importable for the integration to apply, e.g. ``"openai"``."""

    def __init__(self) -> None:
        self.instrumented = False

    @classmethod
    def available(cls) -> bool:
        """Whether the framework is installed (checked without importing it)."""
        return importlib.util.find_spec(cls.framework) is not None

    def instrument(self) -> None:
        """Patch the framework; a second call does nothing."""
        if not self.instrumented:
            self._instrument()
            self.instrumented = True

    def uninstrument(self) -> None:
        """Restore the framework as it was; a second call does nothing."""
        if self.instrumented:
            self._uninstrument()
            self.instrumented = False

    @abc.abstractmethod
    def _instrument(self) -> None:
        """Patch the framework (called once per enable)."""

    @abc.abstractmethod
    def _uninstrument(self) -> None:
        """Undo :meth:`_instrument` exactly."""


def registered() -> dict[str, type[Integration]]:
    """The integrations installed packages registered, by name (broken ones are logged)."""
    from importlib.metadata import entry_points

    found: dict[str, type[Integration]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:
            logger.exception("agentops: cannot load the integration %r", entry.name)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Integration):
            found[entry.name] = loaded
        else:
            logger.error("agentops: integration %r is not an Integration subclass", entry.name)
    return found


def enable(name: str) -> bool:
    """Enable the registered integration ``name``; False if it is unknown or unavailable."""
    with _lock:
        if name in _enabled:
            return True
        integration_class = registered().get(name)
        if integration_class is None or not integration_class.available():
            return False
        integration = integration_class()
        try:
            integration.instrument()
        except Exception:
            logger.exception("agentops: the %s integration failed to instrument", name)
            return False
        _enabled[name] = integration
        return True


def disable(name: str) -> None:
    """Undo :func:`enable` for ``name`` (nothing happens if it is not enabled)."""
    with _lock:
        integration = _enabled.pop(name, None)
    if integration is not None:
        integration.uninstrument()


def enabled() -> list[str]:
    """The names of the integrations enabled now."""
    with _lock:
        return sorted(_enabled)


def setup_integrations(wanted: Iterable[str] | None, disabled: Iterable[str] = ()) -> list[str]:
    """What ``init()`` does: enable ``wanted`` (None: every available one) except ``disabled``."""
    skip = set(disabled)
    names = registered() if wanted is None else dict.fromkeys(wanted)
    started = []
    for name in names:
        if name in skip:
            continue
        if enable(name):
            started.append(name)
        elif wanted is not None:
            logger.warning("agentops: integration %r is not installed or not available", name)
    return started


def when_imported(module: str, callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` once ``module`` is imported: now if it is, else right after its import.

    Returns a function that cancels a callback still waiting. Integrations patch through it, so
    ``init()`` never imports a framework the process has not imported itself (yet)::

        cancel = when_imported("openai", patch_openai)
    """
    if module in sys.modules:
        callback()
        return _nothing_to_cancel
    return _AfterImport(module, callback).cancel


def _nothing_to_cancel() -> None:
    pass


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after a module's first import, then steps out of ``sys.meta_path``."""

    def __init__(self, module: str, callback: Callable[[], None]) -> None:
        self._module = module
        self._callback = callback
        sys.meta_path.insert(0, self)

    def cancel(self) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self._module:
            return None
        self.cancel()
        spec = importlib.util.find_spec(fullname)  # found by the finders after this one
        loader = None if spec is None else spec.loader
        if loader is None:
            return spec
        execute = loader.exec_module
        callback, module = self._callback, self._module

        def execute_then_call_back(new_module: ModuleType) -> None:
            execute(new_module)
            try:
                callback()
            except Exception:
                logger.exception("agentops: could not instrument %s after its import", module)

        loader.exec_module = execute_then_call_back  # type: ignore[method-assign,assignment]
        return spec


_model_call: contextvars.ContextVar[ExternalCall | None] = contextvars.ContextVar(
    "agentops_model_call", default=None
)


def claim_model_call(call: ExternalCall) -> None:
    """Say that ``call`` records the model call now under way in this context.

    A framework that wraps a provider's client (LangChain's ``ChatOpenAI`` around ``openai``)
    claims the call it records, so the provider's integration records nothing for it: one model
    call, one ``llm`` span, its tokens counted once, its stages passed once. The claim lapses by
    itself when ``call`` ends, so a claim left behind never hides a later call.
    """
    _model_call.set(call)


def model_call_claimed() -> bool:
    """True while another integration's unfinished span records this context's model call."""
    claimed = _model_call.get()
    return claimed is not None and not claimed.done


class ExternalCall:
    """One call made by framework code, recorded and guarded like a decorated call.

    Make it with :meth:`start` (or :meth:`astart` in async code, so a wait is awaited); end
    it exactly once with :meth:`end` or :meth:`fail`, from any thread: later calls do nothing,
    so a stream can end it on exhaustion, ``close()`` or garbage collection alike.
    """

    __slots__ = ("_arguments", "_client", "_done", "_input", "_lock", "_spec", "edited", "span")

    def __init__(
        self,
        client: _client.Client,
        span: Span,
        spec: CallSpec,
        input: Any = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        edited: dict[str, Any] | None = None,
    ) -> None:
        self._client = client
        self._spec = spec
        self._input = input
        self._arguments = arguments
        self._done = False
        self._lock = threading.Lock()
        self.span = span
        self.edited = edited
        """The arguments to make the call with, by name, when a reviewer approved it with
        edits (only for a call started with ``edits=True``); None: its own."""

    @classmethod
    def start(
        cls,
        kind: SpanKind,
        name: str,
        *,
        input: Any = None,
        model: str | None = None,
        provider: str | None = None,
        tags: Iterable[str] = (),
        arguments: Mapping[str, Any] | None = None,
        edits: bool = False,
    ) -> ExternalCall | None:
        """Open the call's span and pass the enforcer; None when the SDK is off.

        ``input`` is what the span records; ``arguments``, what the stages see as the call's
        arguments (an LLM request's parameters: model, max tokens, messages...; a tool's named
        arguments). Without them the stages see ``{"input": input}``. ``edits``: the caller
        makes the call with :attr:`edited` when it is set (see the module's docstring).

        Raises the refusing stage's ``EnforcementError`` when the call must not happen (the span
        is then recorded as ``blocked``). A stage that must wait blocks this thread.
        """
        client = _client.current
        if client is None:
            return None
        spec = _spec(kind, name, tags=tags, model=model, provider=provider, edits=edits)
        try:
            span = client.start(spec, (), arguments, input)
        except Substitution as substitution:
            return cls._substituted(client, spec, substitution)
        return None if span is None else cls(client, span, spec)

    @classmethod
    async def astart(
        cls,
        kind: SpanKind,
        name: str,
        *,
        input: Any = None,
        model: str | None = None,
        provider: str | None = None,
        tags: Iterable[str] = (),
        arguments: Mapping[str, Any] | None = None,
        edits: bool = False,
    ) -> ExternalCall | None:
        """Async twin of :meth:`start`: a stage that must wait (an approval) is awaited."""
        client = _client.current
        if client is None:
            return None
        spec = _spec(kind, name, tags=tags, model=model, provider=provider, edits=edits)
        try:
            span = await client.astart(spec, (), arguments, given_input=input)
        except Substitution as substitution:
            return cls._substituted(client, spec, substitution)
        return None if span is None else cls(client, span, spec)

    @classmethod
    def open(
        cls,
        kind: SpanKind,
        name: str,
        *,
        input: Any = None,
        model: str | None = None,
        provider: str | None = None,
        tags: Iterable[str] = (),
        arguments: Mapping[str, Any] | None = None,
        edits: bool = False,
    ) -> ExternalCall | None:
        """Open the call's span without passing the enforcer yet: :meth:`aenforce` does, later.

        For framework code that learns of a call in a sync callback but can await before the
        call runs (LangChain's handler in an async run).
        """
        client = _client.current
        if client is None:
            return None
        spec = _spec(kind, name, tags=tags, model=model, provider=provider, edits=edits)
        span = client.start(spec, (), arguments, input, False)
        return None if span is None else cls(client, span, spec, input, arguments)

    async def aenforce(self) -> None:
        """Pass the enforcer, awaiting any wait, for a call made with :meth:`open`.

        Raises the refusing stage's ``EnforcementError``, the call ended as ``blocked``.
        """
        client = self._client
        if not client.enforcer.active:
            return
        try:
            await client.aenforce(
                self.span, self._spec, (), arguments_of(self._arguments, self._input)
            )
        except Substitution as substitution:
            if substitution.refused is not None:
                self._claim()
                raise substitution.refused from None
            self.edited = _edited(substitution)
        except BaseException:
            self._claim()  # the client ended the span with the refusal
            raise

    @classmethod
    def _substituted(
        cls, client: _client.Client, spec: CallSpec, substitution: Substitution
    ) -> ExternalCall:
        """The call a ``Substitution`` stands for: made with edited arguments, or refused."""
        if substitution.refused is not None:  # the span is closed: raise what refused it
            raise substitution.refused from None
        return cls(client, substitution.span, spec, edited=_edited(substitution))

    @contextlib.contextmanager
    def activated(self) -> Iterator[Span]:
        """Make the span current while the block runs (nested calls become its children)."""
        token = CURRENT.set(self.span)
        otel = self.span.otel
        if otel is not None:
            otel.attach()
        try:
            yield self.span
        finally:
            if otel is not None:
                otel.detach()
            CURRENT.reset(token)

    @property
    def done(self) -> bool:
        """True once :meth:`end` or :meth:`fail` has run."""
        return self._done

    def stop_if_killed(self) -> None:
        """Raise ``AgentKilled`` if a kill now applies to this call, with the decision recorded
        on its span: a stream calls it between chunks, so that a kill cancels it in flight
        (the caller then ends the call with the error, as ``blocked``). Costs an attribute read
        or two while no kill is in force. A failure of the check itself is logged, never
        raised: the call was allowed to start."""
        controls = self._client.controls
        call = self.span.call
        if controls is None or call is None or self._done:
            return
        try:
            decision = controls.kill_of(call)
        except Exception:
            _failures.failed(controls, "agentops: could not check %s for a kill", self.span.name)
            return
        if decision is not None:
            self._client.enforcer.stop(call, controls, decision)

    def end(self, output: Any = None) -> None:
        """The call succeeded with ``output`` (recorded subject to capture settings)."""
        if self._claim():
            self._client.end_span(self.span, self._spec, output)

    def fail(self, exc: BaseException) -> None:
        """The call failed with ``exc``, which the caller re-raises unchanged."""
        if self._claim():
            self._client.fail_span(self.span, exc)

    def _claim(self) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True


def _spec(
    kind: SpanKind,
    name: str,
    *,
    tags: Iterable[str],
    model: str | None,
    provider: str | None,
    edits: bool,
) -> CallSpec:
    return CallSpec(
        kind=kind, name=name, tags=tuple(tags), model=model, provider=provider, substitutes=edits
    )


def _edited(substitution: Substitution) -> dict[str, Any]:
    """The edited arguments by name (no positional ones: an external call passes none)."""
    assert substitution.replacement is not None
    return substitution.replacement[1]
