"""Per-call overhead of a decorated ``@tool``, side by side with other tracers, in one process.

    pip install -e ".[bench]"
    python benchmarks/sdk_overhead.py [--calls 20000] [--rounds 7]

Each variant wraps the same small function. Every call is timed on its own
(``perf_counter_ns``) and the overhead of a variant is the median of its calls minus the median
of the bare function's, measured in interleaved rounds so that the machine's noise falls on all
variants alike. Background work (our worker, OpenTelemetry's BatchSpanProcessor, Langfuse's
exporter) runs as it would in production; exporters discard what they get.

Compared: AgentOps disabled (before ``init()``), AgentOps with capture on and off (inside a run),
an OpenTelemetry SDK span (BatchSpanProcessor, no-op exporter), and Langfuse's ``@observe``
with capture off and on (if installed). Also ``import agentops_sdk`` time, from
``python -X importtime`` in fresh interpreters, against ``import langfuse``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import perf_counter_ns
from typing import Any

import agentops_sdk as agentops
from agentops_sdk.exporters import ExportBatch, ExportOutcome


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
            agentops.init(exporter=DiscardExporter(), capture=capture, otel=False, spool=False)
            return agentops.run("benchmark")

        return setup

    def disabled() -> AbstractContextManager[Any]:
        agentops.shutdown()
        return nullcontext()

    return [
        ("agentops disabled", decorated, disabled),
        ("agentops capture off", decorated, configured(False)),
        ("agentops capture on", decorated, configured(True)),
    ]


def opentelemetry_variant() -> list[Variant]:
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError:
        return []

    class NoopSpanExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopSpanExporter()))
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


def measure(variants: list[Variant], calls: int, rounds: int) -> dict[str, float]:
    samples: dict[str, list[int]] = {"bare function": []}
    samples.update({name: [] for name, _, _ in variants})
    for _ in range(rounds):
        samples["bare function"].extend(time_calls(search, calls))
        for name, fn, setup in variants:
            with setup():
                samples[name].extend(time_calls(fn, calls))
    agentops.shutdown()
    return {name: statistics.median(values) for name, values in samples.items()}


def import_time_ms(module: str, repeats: int = 5) -> float | None:
    """Best cumulative ``-X importtime`` of ``module`` in fresh interpreters, in ms."""
    best: float | None = None
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return None
        pattern = re.compile(rf"\|\s*(\d+)\s*\|\s*{re.escape(module)}$")
        for line in done.stderr.splitlines():
            match = pattern.search(line)
            if match:
                value = int(match.group(1)) / 1000
                best = value if best is None else min(best, value)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()

    variants = agentops_variants() + opentelemetry_variant() + langfuse_variants()
    medians = measure(variants, arguments.calls, arguments.rounds)
    bare = medians.pop("bare function")
    reference = medians.get("opentelemetry sdk span")
    reference_overhead = None if reference is None else reference - bare

    print(f"median per-call time of the bare function: {bare:.0f} ns")
    print(f"{'variant':<32}{'overhead ns':>12}{'vs otel span':>14}")
    for name, median in medians.items():
        overhead = median - bare
        ratio = f"{overhead / reference_overhead:.2f}x" if reference_overhead else "-"
        print(f"{name:<32}{overhead:>12.0f}{ratio:>14}")

    print()
    for module in ("agentops_sdk", "langfuse"):
        ms = import_time_ms(module)
        print(f"import {module:<14}" + ("not installed" if ms is None else f"{ms:8.1f} ms"))


if __name__ == "__main__":
    main()
