"""Per-call overhead of a decorated ``@tool``, side by side with other tracers, in one process.

    pip install -e ".[bench]"
    python benchmarks/sdk_overhead.py [--calls 20000] [--rounds 7]

Each variant wraps the same small function. Every call is timed on its own
(``perf_counter_ns``) and the overhead of a variant is the median of its calls minus the median
of the bare function's, measured in interleaved rounds so that the machine's noise falls on all
variants alike. Background work (our worker, OpenTelemetry's BatchSpanProcessor, Langfuse's
exporter) runs as it would in production; exporters discard what they get.

Compared: AgentOps disabled (before ``init()``), AgentOps with capture on and off (inside a run),
AgentOps with capture on, the controls stage and the policy stage both installed, as an agent
of a hub holds them: a few controls on other agents, teams, tags, a run and an environment
(``benchmarks/controls.py``; none applies to the call) and the 100-rule policy set of
``benchmarks/policy.py`` as the hub's active set (the tool is allowed: three run-wide limits
apply to it, and the set's per-run counters are kept under the run's lock), both restored at
``init()`` from the saved copies, the hub out of reach; an OpenTelemetry SDK span
(BatchSpanProcessor, no-op exporter), and Langfuse's ``@observe`` with capture off and on (if
installed). Also how long importing takes, in fresh interpreters (best of 5): ``import
agentops_sdk`` alone (it loads its names on first use) and with the names an agent uses, against
``import langfuse`` with its ``observe``.

Then one ``chat.completions.create`` of the real ``openai`` client over a mocked transport
(``httpx.MockTransport`` answering a recorded-shape completion): uninstrumented, with the AgentOps
OpenAI integration (capture off and on), and with opentelemetry-instrumentation-openai-v2
(its own TracerProvider, BatchSpanProcessor, no-op exporter); overhead in ns and in % of the
uninstrumented call.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from controls import HUB_URL, fifty_controls  # benchmarks/controls.py, beside this script
from policy import policy_document  # benchmarks/policy.py

import agentops_sdk as agentops
from agentops_sdk import integrations
from agentops_sdk.contract.policy import EffectivePolicy, parse_policy
from agentops_sdk.enforcement.saved import SavedControls, SavedPolicies
from agentops_sdk.exporters import ExportBatch, ExportOutcome

CONTROLS = 10
"""Controls the governed variant holds: one of each shape ``fifty_controls`` makes."""
API_KEY = "ak_benchmark"


def search(query: str, limit: int = 3) -> list[str]:
    """The function every variant wraps: small, so the wrapper's cost dominates."""
    return [query] * limit


class DiscardExporter:
    """Takes batches and throws them away (the equivalent of OpenTelemetry's no-op exporter)."""

    def export(
        self, batch: ExportBatch, *, deadline: float, cancel: threading.Event
    ) -> ExportOutcome:
        return ExportOutcome.sent()

    def close(self) -> None:
        pass


Variant = tuple[str, Callable[..., Any], Callable[[], AbstractContextManager[Any]]]


def agentops_variants() -> list[Variant]:
    decorated = agentops.tool(search)

    def configured(capture: bool) -> Callable[[], AbstractContextManager[Any]]:
        def setup() -> AbstractContextManager[Any]:
            agentops.init(
                exporter=DiscardExporter(),
                capture=capture,
                otel=False,
                spool=False,
                integrations=[],
            )
            return agentops.run("benchmark")

        return setup

    def disabled() -> AbstractContextManager[Any]:
        agentops.shutdown()
        return nullcontext()

    # What an agent restarted while its hub is away holds: the hub's controls and active
    # policy set, saved by the process before it. The link keeps trying the hub meanwhile.
    spool_dir = Path(tempfile.mkdtemp())
    SavedControls(spool_dir, HUB_URL, API_KEY).save(fifty_controls(CONTROLS))
    active = EffectivePolicy(org_id=uuid.uuid4(), version=1, policy=parse_policy(policy_document()))
    SavedPolicies(spool_dir, HUB_URL, API_KEY).save(active)
    # Named so that no rule is about it by name: it passes the set's run-wide limits.
    governed = agentops.tool(name="lookup")(search)

    def with_controls_and_policy() -> AbstractContextManager[Any]:
        client = agentops.init(
            exporter=DiscardExporter(),
            otel=False,
            spool=False,
            integrations=[],
            hub_url=HUB_URL,
            api_key=API_KEY,
            spool_dir=spool_dir,
            max_staleness=86_400.0,
        )
        assert client is not None
        assert client.controls is not None
        assert client.enforcer.link.snapshot.values.get("policies") is not None
        return agentops.run("benchmark")

    return [
        ("agentops disabled", decorated, disabled),
        ("agentops capture off", decorated, configured(False)),
        ("agentops capture on", decorated, configured(True)),
        (
            f"agentops capture on, {CONTROLS} controls, 100 rules",
            governed,
            with_controls_and_policy,
        ),
    ]


def otel_tracer_provider() -> Any:
    """An OpenTelemetry SDK TracerProvider exporting to nowhere; None if it is not installed."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return None

    class NoopSpanExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopSpanExporter()))
    return provider


def opentelemetry_variant() -> list[Variant]:
    provider = otel_tracer_provider()
    if provider is None:
        return []
    tracer = provider.get_tracer("benchmark")

    def traced(query: str, limit: int = 3) -> list[str]:
        with tracer.start_as_current_span("search"):
            return search(query, limit)

    return [("opentelemetry sdk span", traced, nullcontext)]


def accept_everything() -> str:
    """A local HTTP endpoint answering 200 to every POST: Langfuse's exporter sends here."""

    class Accept(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def langfuse_variants() -> list[Variant]:
    os.environ.setdefault("LANGFUSE_PUBLIC_KEY", "pk-lf-benchmark")
    os.environ.setdefault("LANGFUSE_SECRET_KEY", "sk-lf-benchmark")
    os.environ.setdefault("LANGFUSE_HOST", accept_everything())
    try:
        from langfuse import observe
    except ImportError:
        return []
    quiet = observe(capture_input=False, capture_output=False)(search)
    loud = observe()(search)
    return [
        ("langfuse @observe capture off", quiet, nullcontext),
        ("langfuse @observe capture on", loud, nullcontext),
    ]


def time_calls(fn: Callable[..., Any], calls: int) -> Iterator[int]:
    for _ in range(calls):
        start = perf_counter_ns()
        fn("weather in paris", limit=2)
        yield perf_counter_ns() - start


def measure(
    baseline: tuple[str, Callable[..., Any]], variants: list[Variant], calls: int, rounds: int
) -> dict[str, float]:
    """Median per-call ns of ``baseline`` and of each variant, in interleaved rounds."""
    base_name, base_fn = baseline
    samples: dict[str, list[int]] = {base_name: []}
    samples.update({name: [] for name, _, _ in variants})
    for _ in range(rounds):
        samples[base_name].extend(time_calls(base_fn, calls))
        for name, fn, setup in variants:
            with setup():
                samples[name].extend(time_calls(fn, calls))
    agentops.shutdown()
    return {name: statistics.median(values) for name, values in samples.items()}


CHAT_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris: 18°C, light rain."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 31,
        "completion_tokens": 9,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "system_fingerprint": "fp_06737a9306",
}


def openai_chat() -> Callable[..., Any] | None:
    """One chat completion over a mocked transport, called as ``chat(query, limit=...)``."""
    try:
        import httpx
        import openai
    except ImportError:
        return None
    body = json.dumps(CHAT_COMPLETION).encode()
    headers = {"content-type": "application/json"}
    transport = httpx.MockTransport(
        lambda _request: httpx.Response(200, content=body, headers=headers)
    )
    http_client: Any = httpx.Client(transport=transport)  # openai 3 takes httpx's and httpx2's
    client = openai.OpenAI(
        api_key="benchmark", base_url="http://benchmark/v1", http_client=http_client, max_retries=0
    )

    def chat(query: str, limit: int = 3) -> Any:
        messages: Any = [{"role": "user", "content": query}]
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, max_tokens=limit
        )

    return chat


def openai_variants(chat: Callable[..., Any]) -> list[Variant]:
    def with_agentops(capture: bool) -> Callable[[], AbstractContextManager[Any]]:
        @contextmanager
        def setup() -> Iterator[None]:
            agentops.init(
                exporter=DiscardExporter(),
                capture=capture,
                otel=False,
                spool=False,
                integrations=[],
            )
            integrations.enable("openai")
            try:
                with agentops.run("benchmark"):
                    yield
            finally:
                integrations.disable("openai")
                agentops.shutdown()

        return setup

    variants = [
        ("agentops openai capture off", chat, with_agentops(False)),
        ("agentops openai capture on", chat, with_agentops(True)),
    ]
    provider = otel_tracer_provider()
    try:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    except ImportError:
        return variants
    if provider is None:
        return variants

    @contextmanager
    def with_opentelemetry() -> Iterator[None]:
        instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]
        instrumentor.instrument(tracer_provider=provider)
        try:
            yield
        finally:
            instrumentor.uninstrument()

    return [*variants, ("otel openai-v2 instrumentor", chat, with_opentelemetry)]


IMPORTS = {
    "import agentops_sdk": "import agentops_sdk",
    "import agentops_sdk, use it": "import agentops_sdk as m; m.init, m.tool, m.agent, m.run",
    "import langfuse, use it": "import langfuse as m; m.observe",
}
"""What is timed: the import alone, and with the first use of the names an agent needs."""


def import_time_ms(code: str, repeats: int = 5) -> float | None:
    """Best wall time of ``code`` in fresh interpreters, in ms; None if it fails."""
    timed = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    best: float | None = None
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", timed], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            return None
        value = float(done.stdout) * 1000
        best = value if best is None else min(best, value)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--openai-calls", type=int, default=2_000, help="chat completions per variant per round"
    )
    arguments = parser.parse_args()
    logging.getLogger("agentops_sdk").setLevel(logging.ERROR)  # the governed variant's hub is away

    variants = agentops_variants() + opentelemetry_variant() + langfuse_variants()
    medians = measure(("bare function", search), variants, arguments.calls, arguments.rounds)
    bare = medians.pop("bare function")
    reference = medians.get("opentelemetry sdk span")
    reference_overhead = None if reference is None else reference - bare

    print(f"median per-call time of the bare function: {bare:.0f} ns")
    print(f"{'variant':<44}{'overhead ns':>12}{'vs otel span':>14}")
    for name, median in medians.items():
        overhead = median - bare
        ratio = f"{overhead / reference_overhead:.2f}x" if reference_overhead else "-"
        print(f"{name:<44}{overhead:>12.0f}{ratio:>14}")

    chat = openai_chat()
    if chat is not None:
        print()
        baseline = ("openai uninstrumented", chat)
        medians = measure(baseline, openai_variants(chat), arguments.openai_calls, arguments.rounds)
        plain = medians.pop("openai uninstrumented")
        print(f"median chat.completions.create over a mocked transport: {plain:.0f} ns")
        print(f"{'variant':<32}{'overhead ns':>12}{'% of call':>12}")
        for name, median in medians.items():
            overhead = median - plain
            print(f"{name:<32}{overhead:>12.0f}{overhead / plain:>12.1%}")

    print()
    for name, code in IMPORTS.items():
        ms = import_time_ms(code)
        print(f"{name:<32}" + ("not installed" if ms is None else f"{ms:8.1f} ms"))


if __name__ == "__main__":
    main()
