"""The OpenTelemetry bridge, in real subprocesses: the global tracer provider is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.extras  # needs opentelemetry-sdk

PRELUDE = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()

def install_provider():
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

def dump():
    spans = []
    for s in exporter.get_finished_spans():
        spans.append({
            "name": s.name,
            "id": s.context.span_id,
            "parent": s.parent.span_id if s.parent else None,
            "attributes": dict(s.attributes),
            "status": s.status.status_code.name,
        })
    print(json.dumps(spans))
"""


def run_script(tmp_path: Path, body: str, prelude: str = PRELUDE) -> Any:
    script = tmp_path / "script.py"
    script.write_text(prelude + textwrap.dedent(body))
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "AGENTOPS_EXPORTER": "memory"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def by_name(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [s for s in spans if s["name"] == name]
    assert len(matches) == 1, [s["name"] for s in spans]
    return matches[0]


def test_spans_nest_inside_the_applications_traces_with_genai_attributes(tmp_path: Path) -> None:
    spans = run_script(
        tmp_path,
        """
        install_provider()
        import agentops_sdk as agentops
        agentops.init()
        tracer = trace.get_tracer("app")

        @agentops.tool
        def search(query):
            with tracer.start_as_current_span("http GET"):
                return [query]

        @agentops.llm(model="gpt-4o", provider="openai")
        def ask(prompt):
            return {"usage": {"prompt_tokens": 11, "completion_tokens": 7}}

        @agentops.agent(name="researcher")
        def researcher(topic):
            search(topic)
            return ask(topic)

        with tracer.start_as_current_span("request"):
            researcher("cats")
        dump()
        """,
    )
    request = by_name(spans, "request")
    agent = by_name(spans, "invoke_agent researcher")
    tool = by_name(spans, "execute_tool search")
    http = by_name(spans, "http GET")
    chat = by_name(spans, "chat gpt-4o")
    assert agent["parent"] == request["id"]
    assert tool["parent"] == agent["id"]
    assert http["parent"] == tool["id"]
    assert chat["parent"] == agent["id"]
    assert agent["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert agent["attributes"]["gen_ai.agent.name"] == "researcher"
    assert tool["attributes"]["gen_ai.tool.name"] == "search"
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert chat["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert chat["attributes"]["gen_ai.provider.name"] == "openai"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == 11
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == 7
    assert tool["attributes"]["agentops.run.id"] == agent["attributes"]["agentops.run.id"]


def test_failed_call_marks_the_opentelemetry_span_as_error(tmp_path: Path) -> None:
    spans = run_script(
        tmp_path,
        """
        install_provider()
        import agentops_sdk as agentops
        agentops.init()

        @agentops.tool
        def explode():
            raise KeyError("boom")

        try:
            explode()
        except KeyError:
            pass
        dump()
        """,
    )
    tool = by_name(spans, "execute_tool explode")
    assert tool["status"] == "ERROR"
    assert tool["attributes"]["error.type"] == "KeyError"


def test_without_opentelemetry_imported_the_sdk_does_not_import_it(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import json, sys
        import agentops_sdk as agentops
        agentops.init()

        @agentops.tool
        def search(query):
            return [query]

        search("x")
        print(json.dumps({"imported": "opentelemetry.trace" in sys.modules}))
        """,
        prelude="",
    )
    assert result == {"imported": False}


def test_without_a_provider_the_sdk_never_installs_one(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        import agentops_sdk as agentops
        agentops.init()

        @agentops.tool
        def search(query):
            return [query]

        search("x")
        print(json.dumps({
            "provider": type(trace.get_tracer_provider()).__name__,
            "spans": len(exporter.get_finished_spans()),
        }))
        """,
    )
    assert result == {"provider": "ProxyTracerProvider", "spans": 0}


def test_otel_false_keeps_spans_out_of_the_applications_traces(tmp_path: Path) -> None:
    spans = run_script(
        tmp_path,
        """
        install_provider()
        import agentops_sdk as agentops
        agentops.init(otel=False)

        @agentops.tool
        def search(query):
            return [query]

        with trace.get_tracer("app").start_as_current_span("request"):
            search("x")
        dump()
        """,
    )
    assert [s["name"] for s in spans] == ["request"]
