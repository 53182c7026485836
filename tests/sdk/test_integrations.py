"""The integration mechanism: discovery, enabling, undoing, and guarded external calls."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.guards import CallInfo
from agentops_sdk.integrations import ExternalCall, Integration
from agentops_sdk.testing import CapturedEvents, capture_events


class FakeFramework:
    """Stands in for a library an integration patches."""

    @staticmethod
    def complete(prompt: str) -> str:
        return prompt.upper()


ORIGINAL = FakeFramework.complete


class FakeIntegration(Integration):
    name: ClassVar[str] = "fake"
    framework: ClassVar[str] = "json"  # importable everywhere
    instrument_calls: ClassVar[int] = 0

    def _instrument(self) -> None:
        type(self).instrument_calls += 1

        def complete(prompt: str) -> str:
            call = ExternalCall.start("llm", "fake complete", input=prompt, model="fake-1")
            if call is None:
                return ORIGINAL(prompt)
            try:
                with call.activated():
                    result = ORIGINAL(prompt)
            except BaseException as exc:
                call.fail(exc)
                raise
            call.end(result)
            return result

        FakeFramework.complete = staticmethod(complete)  # type: ignore[method-assign]

    def _uninstrument(self) -> None:
        FakeFramework.complete = staticmethod(ORIGINAL)  # type: ignore[method-assign]


class MissingFramework(FakeIntegration):
    name: ClassVar[str] = "missing"
    framework: ClassVar[str] = "no_such_framework_here"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Entry points as if packages had registered the two integrations above."""
    entries = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint("fake", f"{__name__}:FakeIntegration", "x"),
            importlib.metadata.EntryPoint("missing", f"{__name__}:MissingFramework", "x"),
        ]
    )

    def entry_points(**selection: Any) -> importlib.metadata.EntryPoints:
        assert selection == {"group": integrations.ENTRY_POINT_GROUP}
        return entries

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    FakeIntegration.instrument_calls = 0
    for name in integrations.enabled():  # real ones an earlier test's init() left enabled
        integrations.disable(name)
    yield
    for name in integrations.enabled():
        integrations.disable(name)
    agentops.shutdown(1)


def test_init_enables_every_registered_integration_whose_framework_is_importable(
    registry: None,
) -> None:
    agentops.init(exporter="memory")
    assert integrations.enabled() == ["fake"]
    assert FakeFramework.complete is not ORIGINAL


def test_init_can_choose_or_skip_integrations(registry: None) -> None:
    agentops.init(exporter="memory", disabled_integrations=["fake"])
    assert integrations.enabled() == []
    agentops.init(exporter="memory", integrations=["fake"])
    assert integrations.enabled() == ["fake"]


def test_enabling_twice_is_harmless_and_disabling_restores_the_library(registry: None) -> None:
    assert integrations.enable("fake")
    assert integrations.enable("fake")
    assert FakeIntegration.instrument_calls == 1
    integrations.disable("fake")
    integrations.disable("fake")
    assert FakeFramework.complete is ORIGINAL
    assert not integrations.enable("missing")
    assert not integrations.enable("unknown")


def test_an_external_call_is_recorded_like_a_decorated_one(registry: None) -> None:
    integrations.enable("fake")
    with capture_events() as captured:

        @agentops.agent
        def assistant() -> str:
            return FakeFramework.complete("hi")

        assert assistant() == "HI"
        spans = {span.name: span for span in captured.spans}
    call = spans["fake complete"]
    assert call.kind == "llm"
    assert call.parent_id == spans["assistant"].id
    assert (call.input, call.output) == ("hi", "HI")
    assert call.llm is not None
    assert call.llm.model == "fake-1"


def test_a_guard_stops_an_external_call_before_the_framework_runs(registry: None) -> None:
    integrations.enable("fake")
    reached: list[str] = []

    def deny(call: CallInfo) -> None:
        if call.kind == "llm":
            raise agentops.PolicyViolation("no LLM calls", rule="no-llm")

    def spy(prompt: str) -> str:
        reached.append(prompt)
        return prompt

    with capture_events() as captured:
        remove = captured.client.guards.add(deny)
        global ORIGINAL
        saved, ORIGINAL = ORIGINAL, spy
        try:
            with pytest.raises(agentops.PolicyViolation, match="no LLM calls"):
                FakeFramework.complete("hi")
        finally:
            ORIGINAL = saved
            remove()
        (span,) = captured.spans
    assert reached == []
    assert span.status == "blocked"


def test_an_external_call_ends_once_whatever_ends_it(agentops_events: CapturedEvents) -> None:
    call = ExternalCall.start("llm", "stream")
    assert call is not None
    call.end("first")
    call.fail(RuntimeError("late"))
    call.end("again")
    assert call.done
    (span,) = agentops_events.spans
    assert (span.status, span.output) == ("ok", "first")


def test_without_the_sdk_an_external_call_is_none() -> None:
    assert ExternalCall.start("tool", "anything") is None
