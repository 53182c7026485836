"""A small decorated agent: two tools and a step, recorded by AgentOps.

With no hub configured the SDK records to ``.agentops/events.jsonl``; this script then reads that
file back and prints a summary of the run it just made. Set ``AGENTOPS_HUB_URL`` (and
``AGENTOPS_API_KEY``) to send the same events to a hub instead.

    python examples/quickstart.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import agentops_sdk as agentops

WEATHER = {"paris": "18°C, light rain", "lisbon": "24°C, sunny", "oslo": "7°C, overcast"}


@agentops.tool
def get_weather(city: str) -> str:
    """Look up today's weather for a city (a stand-in for a real API)."""
    return WEATHER.get(city.lower(), "unknown")


@agentops.tool(name="convert_temperature", tags=["math"])
def to_fahrenheit(celsius: float) -> float:
    """Convert Celsius to Fahrenheit."""
    return round(celsius * 9 / 5 + 32, 1)


@agentops.step
def plan(question: str) -> list[str]:
    """Decide which cities the question is about."""
    return [city for city in WEATHER if city in question.lower()]


@agentops.agent(name="weather-assistant")
def assistant(question: str) -> str:
    """Answer a question about the weather in one or more cities."""
    lines = []
    for city in plan(question):
        report = get_weather(city)
        celsius = float(report.split("°", 1)[0])
        lines.append(f"{city.title()}: {report} ({to_fahrenheit(celsius)}°F)")
    return "\n".join(lines) or "I only know Paris, Lisbon and Oslo."


def summarise(path: Path) -> str:
    """A short text summary of the latest run recorded in the JSONL file."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    run = [e for e in events if e["type"] == "run"][-1]
    run_id = run["id"]
    spans = [e for e in events if e["type"] == "span" and e["run_id"] == run_id]
    by_parent: dict[str | None, list[dict[str, object]]] = {}
    for span in sorted(spans, key=lambda s: str(s["started_at"])):
        by_parent.setdefault(span["parent_id"], []).append(span)

    lines = [f"run {run['id']}  agent={run['agent']}  status={run['status']}  spans={len(spans)}"]

    def walk(parent: str | None, depth: int) -> None:
        for span in by_parent.get(parent, []):
            lines.append(f"{'  ' * depth}- {span['kind']:<5} {span['name']}  {span['status']}")
            walk(str(span["id"]), depth + 1)

    walk(None, 1)
    return "\n".join(lines)


def main() -> None:
    """Run the agent once, flush, and print what was recorded."""
    client = agentops.init(environment="dev")
    answer = assistant("What's the weather in Paris and Oslo?")
    result = agentops.flush(timeout=5)
    print(answer)
    print()
    if client is None or client.options.exporter_name != "jsonl":
        print(f"sent {result.sent} events ({os.environ.get('AGENTOPS_HUB_URL', 'exporter')})")
        return
    print(f"recorded {result.sent} events to {client.options.jsonl_path}")
    print(summarise(client.options.jsonl_path))


if __name__ == "__main__":
    main()
